"""Placeholder: filled in by the catalog resource work."""
