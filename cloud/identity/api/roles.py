"""Placeholder: filled in by the roles resource work."""
