"""The compute agent: runs instances on its host through a driver (libvirt or fake)."""
