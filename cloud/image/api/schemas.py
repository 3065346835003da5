"""Placeholder: filled in by the image service work."""
