"""Placeholder: filled in by the groups resource work."""
