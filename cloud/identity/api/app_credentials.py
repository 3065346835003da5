"""Placeholder: filled in by the app_credentials resource work."""
