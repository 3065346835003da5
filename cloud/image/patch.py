"""``PATCH /v2/images/{id}``: Glance's JSON-patch media types, parsed and applied (pure).

Two media types exist: ``application/openstack-images-v2.1-json-patch`` (RFC 6902 style objects,
``{"op": "add", "path": "/name", "value": "x"}``; ``add`` sets whether or not the attribute
exists) and the older ``application/openstack-images-v2.0-json-patch`` (``{"add": "/name",
"value": "x"}``; ``add`` of an existing attribute is a conflict). Paths are JSON pointers one level
deep: a core attribute (``/name``, ``/tags``, ``/min_ram``, ...) or an extra property (``/k``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cloud.api.errors import ApiError
from cloud.image import attributes

PATCH_V2_0 = "application/openstack-images-v2.0-json-patch"
PATCH_V2_1 = "application/openstack-images-v2.1-json-patch"
MEDIA_TYPES = {PATCH_V2_0: 4, PATCH_V2_1: 10}  # media type -> JSON-schema draft it follows
OPERATIONS = ("add", "remove", "replace")
# What PATCH may touch beside extra properties; the rest of the core attributes are read-only.
_CORE = frozenset(attributes.BASE_PROPERTIES) - {"locations"}


@dataclass(frozen=True)
class Change:
    op: str
    path: str  # the attribute, decoded from the pointer
    value: Any = None
    draft: int = 10


def unsupported_media_type(content_type: str) -> ApiError:
    allowed = ", ".join(sorted(MEDIA_TYPES))
    return ApiError(
        415,
        f"The request media type {content_type} is not supported by this server. "
        f"Image PATCH expects Content-Type one of: {allowed}",
        headers={"Accept-Patch": allowed},
    )


def parse(content_type: str, raw: bytes) -> list[Change]:
    """The changes of a PATCH body, checked as Glance does before touching the image."""
    draft = MEDIA_TYPES.get(content_type)
    if draft is None:
        raise unsupported_media_type(content_type)
    if not raw.strip():
        raise ApiError(400, "Body expected in request.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "Malformed JSON in request body.") from None
    if not isinstance(body, list):
        raise ApiError(400, "Request body must be a JSON array of operation objects.")
    changes = []
    for raw_change in body:
        if not isinstance(raw_change, dict):
            raise ApiError(400, "Operations must be JSON objects.")
        op, pointer = _op_and_pointer(raw_change, draft)
        path = decode_pointer(pointer)
        if len(path) != 1:
            raise ApiError(400, f"Invalid JSON pointer for this resource: '/{'/'.join(path)}'")
        value = None
        if op != "remove":
            if "value" not in raw_change:
                raise ApiError(400, f'Operation "{op}" requires a member named "value".')
            value = raw_change["value"]
        change = Change(op, path[0], value, draft)
        _check_change(change)
        changes.append(change)
    return changes


def _op_and_pointer(raw: dict[str, Any], draft: int) -> tuple[str, str]:
    if draft == 10:
        op = raw.get("op")
        if op is None:
            raise ApiError(
                400,
                "Unable to find `op` in JSON Schema change. It must be one of the following: "
                + ", ".join(OPERATIONS)
                + ".",
            )
        if op not in OPERATIONS:
            raise ApiError(
                400,
                f"Invalid operation: `{op}`. It must be one of the following: "
                + ", ".join(OPERATIONS)
                + ".",
            )
        if "path" not in raw:
            raise ApiError(400, "Unable to find 'path' in JSON Schema change")
        pointer = raw["path"]
    else:
        found = [key for key in OPERATIONS if key in raw]
        if len(found) != 1:
            raise ApiError(
                400,
                'Operation objects must contain exactly one member named "add", "remove", '
                'or "replace".',
            )
        op = found[0]
        pointer = raw[op]
    if not isinstance(pointer, str):
        raise ApiError(400, f'Pointer `{pointer}` does not start with "/".')
    return op, pointer


def decode_pointer(pointer: str) -> list[str]:
    """A JSON pointer's tokens (``~1`` is ``/``, ``~0`` is ``~``), in Glance's restricted form."""
    if not pointer.startswith("/"):
        raise ApiError(400, f'Pointer `{pointer}` does not start with "/".')
    if re.search(r"/\s*?/", pointer[1:]):
        raise ApiError(400, f'Pointer `{pointer}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise ApiError(400, f'Pointer `{pointer}` end with "/".')
    if pointer[1:].strip() == "/" or not pointer[1:].strip():
        raise ApiError(400, f"Pointer `{pointer}` does not contains valid token.")
    if re.search("~[^01]", pointer) or pointer.endswith("~"):
        raise ApiError(
            400, f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.'
        )
    return [
        part.replace("~1", "/").replace("~0", "~").strip()
        for part in pointer.lstrip("/").split("/")
    ]


def _check_change(change: Change) -> None:
    name = change.path
    if name in attributes.READ_ONLY or name == "id":
        raise ApiError(403, f"Attribute '{name}' is read-only.")
    if name in attributes.RESERVED or name.startswith(attributes.RESERVED_NAMESPACE):
        raise ApiError(403, f"Attribute '{name}' is reserved.")
    if name == "locations":
        raise ApiError(
            403, f"It's not allowed to {change.op} locations if locations are invisible."
        )
    if attributes.has_nul(name):
        raise ApiError(400, f"Pointer `/{name}` must not contain NUL characters.")
    if change.op != "remove":
        attributes.check_value(name, change.value)
        if name not in _CORE and len(name) > 255:
            raise ApiError(400, "Custom property should not be greater than 255 characters.")


@dataclass
class ImageDoc:
    """The writable part of an image: core attributes, extra properties, tags."""

    core: dict[str, Any]
    properties: dict[str, str]
    tags: list[str] = field(default_factory=list)

    def copy(self) -> ImageDoc:
        return ImageDoc(dict(self.core), dict(self.properties), list(self.tags))


def apply(doc: ImageDoc, changes: list[Change]) -> ImageDoc:
    """``doc`` after ``changes`` (a new object); conflicts and forbidden changes raise."""
    out = doc.copy()
    for change in changes:
        name = change.path
        core = name in _CORE
        if change.op == "remove":
            if core:
                raise ApiError(403, f"Property {name} may not be removed.")
            if name not in out.properties:
                raise ApiError(409, f"Property {name} does not exist.")
            del out.properties[name]
            continue
        if change.op == "replace" and not core and name not in out.properties:
            raise ApiError(409, f"Property {name} does not exist.")
        if change.op == "add" and change.draft == 4 and (core or name in out.properties):
            raise ApiError(409, f"Property {name} already present.")
        if name == "tags":
            out.tags = attributes.unique_tags(change.value)
        elif core:
            out.core[name] = change.value
        else:
            out.properties[name] = change.value
    return out


def changed_attributes(before: ImageDoc, after: ImageDoc) -> list[str]:
    """Names whose value differs (core attributes, ``tags``, extra properties), sorted."""
    names = {k for k in {*before.core, *after.core} if before.core.get(k) != after.core.get(k)}
    if before.tags != after.tags:
        names.add("tags")
    props = {*before.properties, *after.properties}
    names |= {k for k in props if before.properties.get(k) != after.properties.get(k)}
    return sorted(names)
