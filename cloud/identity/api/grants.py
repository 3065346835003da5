"""Placeholder: filled in by the grants resource work."""
