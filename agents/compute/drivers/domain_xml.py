"""The libvirt domain XML of an instance: built from a :class:`DomainConfig`, read back with
:func:`parse_domain`. Pure (no libvirt import), so it is unit-tested on its own.

What every domain gets, and why:
- ``<features><acpi/><apic/>``: a clean shutdown is an ACPI power-button press, and live disk
  attach needs ACPI hotplug.
- serial console on a pty whose output virtlogd copies to ``console_log`` (size-capped, unlike a
  ``file`` chardev that QEMU writes without bound); the pty keeps ``virsh console`` working.
- VNC on a loopback address with an automatic port: the console proxy relays to it, nothing else
  may reach it.
- ``on_reboot=restart`` (a guest reboot stays a reboot), ``on_poweroff=destroy``.
- our own metadata element (instance id, name, flavor, image), so a domain found on the host can
  be told apart from others and reconciled.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

METADATA_NS = "https://aiostack.dev/xmlns/libvirt/instance/1"
ET.register_namespace("aiostack", METADATA_NS)


@dataclass(frozen=True)
class DirectBoot:
    """Direct kernel boot: libvirt hands QEMU the kernel, initrd and command line."""

    kernel: str
    ramdisk: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class DomainConfig:
    name: str  # the libvirt domain name
    instance_id: str
    display_name: str
    virt_type: str  # kvm | qemu | test (libvirt's test driver)
    vcpus: int
    ram_mb: int
    disk: str  # root disk (qcow2 overlay)
    console_log: str
    disk_format: str = "qcow2"
    uuid: str | None = None
    boot: DirectBoot | None = None
    vnc_listen: str = "127.0.0.1"
    flavor: str = ""
    image_ref: str = ""


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def build_domain_xml(cfg: DomainConfig) -> str:
    if cfg.vcpus < 1 or cfg.ram_mb < 1:
        raise ValueError("a domain needs at least one vCPU and some memory")
    dom = ET.Element("domain", type=cfg.virt_type)
    _sub(dom, "name", cfg.name)
    if cfg.uuid:
        _sub(dom, "uuid", cfg.uuid)
    _sub(dom, "title", cfg.display_name)
    meta = _sub(_sub(dom, "metadata"), f"{{{METADATA_NS}}}instance", id=cfg.instance_id)
    _sub(meta, f"{{{METADATA_NS}}}name", cfg.display_name)
    _sub(meta, f"{{{METADATA_NS}}}flavor", cfg.flavor)
    _sub(meta, f"{{{METADATA_NS}}}image", cfg.image_ref)
    _sub(dom, "memory", str(cfg.ram_mb), unit="MiB")
    _sub(dom, "vcpu", str(cfg.vcpus))

    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64")
    if cfg.boot is not None:
        _sub(os_el, "kernel", cfg.boot.kernel)
        if cfg.boot.ramdisk:
            _sub(os_el, "initrd", cfg.boot.ramdisk)
        if cfg.boot.cmdline:
            _sub(os_el, "cmdline", cfg.boot.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")

    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=cfg.disk_format)
    _sub(disk, "source", file=cfg.disk)
    _sub(disk, "target", dev="vda", bus="virtio")

    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=cfg.console_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")

    graphics = _sub(devices, "graphics", type="vnc", autoport="yes", listen=cfg.vnc_listen)
    _sub(graphics, "listen", type="address", address=cfg.vnc_listen)
    _sub(devices, "memballoon", model="none")  # nothing here would use a balloon
    return ET.tostring(dom, encoding="unicode")


@dataclass(frozen=True)
class DomainFacts:
    """What we read back from a live domain's XML."""

    instance_id: str | None  # None: not one of ours (no aiostack metadata)
    has_vnc: bool
    vnc_port: int | None  # None: no VNC or no port assigned yet (the domain is off)
    vnc_listen: str | None
    disks: tuple[str, ...]
    console_log: str | None


def parse_domain(xml: str) -> DomainFacts:
    root = ET.fromstring(xml)
    meta = root.find(f"metadata/{{{METADATA_NS}}}instance")
    instance_id = meta.get("id") if meta is not None else None
    port: int | None = None
    listen: str | None = None
    graphics = root.find("devices/graphics[@type='vnc']")
    if graphics is not None:
        raw_port = graphics.get("port")
        port = int(raw_port) if raw_port and int(raw_port) > 0 else None
        listen = graphics.get("listen")
    disks = tuple(
        src.get("file", "")
        for src in root.findall("devices/disk[@device='disk']/source")
        if src.get("file")
    )
    log = root.find("devices/serial/log")
    return DomainFacts(
        instance_id=instance_id,
        has_vnc=graphics is not None,
        vnc_port=port,
        vnc_listen=listen,
        disks=disks,
        console_log=log.get("file") if log is not None else None,
    )
