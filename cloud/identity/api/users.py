"""Placeholder: filled in by the users resource work."""
