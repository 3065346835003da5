"""Images and members as Glance v2 shows them.

Links are relative to the service root (``/v2/images/<id>``), exactly as Glance writes them;
clients join them to the endpoint they discovered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Core attributes in the order Glance writes them (after the extra properties).
CORE_ORDER = (
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "size",
    "virtual_size",
    "status",
    "checksum",
    "protected",
    "min_ram",
    "min_disk",
    "owner",
    "os_hidden",
    "os_hash_algo",
    "os_hash_value",
)


def iso(dt: datetime | None) -> str | None:
    """Glance's time format: ``2026-11-24T04:45:35Z`` (UTC, whole seconds)."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_href(image_id: str, sub: str = "") -> str:
    return f"/v2/images/{image_id}" + (f"/{sub}" if sub else "")


def image_attributes(image: Mapping[str, Any]) -> dict[str, Any]:
    """The image without its links: extra properties, then core attributes, times and tags."""
    view: dict[str, Any] = dict(image["properties"])
    for key in CORE_ORDER:
        view[key] = image[key]
    view["id"] = image["id"]
    view["created_at"] = iso(image["created_at"])
    view["updated_at"] = iso(image["updated_at"])
    view["tags"] = list(image["tags"])
    return view


def image_view(image: Mapping[str, Any]) -> dict[str, Any]:
    """The image as ``GET /v2/images/{id}`` returns it."""
    view = image_attributes(image)
    view["self"] = image_href(image["id"])
    view["file"] = image_href(image["id"], "file")
    view["schema"] = "/v2/schemas/image"
    return view


def member_view(member: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "member_id": member["member_id"],
        "image_id": member["image_id"],
        "status": member["status"],
        "created_at": iso(member["created_at"]),
        "updated_at": iso(member["updated_at"]),
        "schema": "/v2/schemas/member",
    }
