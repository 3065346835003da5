"""Placeholder: filled in by the compute work."""
