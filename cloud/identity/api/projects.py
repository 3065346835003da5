"""Placeholder: filled in by the projects resource work."""
