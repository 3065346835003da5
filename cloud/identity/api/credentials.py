"""Placeholder: filled in by the credentials resource work."""
