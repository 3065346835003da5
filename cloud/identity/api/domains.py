"""Placeholder: filled in by the domains resource work."""
