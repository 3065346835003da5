"""Placeholder: filled in by the assignments resource work."""
