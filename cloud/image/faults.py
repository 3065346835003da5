"""Glance's fault format (placeholder until the image API lands: Keystone-style body)."""

from __future__ import annotations

from typing import Any

from cloud.api.errors import ApiError


def glance_fault(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.status, "message": error.message, "title": error.title}}
