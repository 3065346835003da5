"""The image's attributes as Glance v2 defines them: the JSON schema, and checks of client values.

Core attributes have a schema each (``BASE_PROPERTIES``, served at ``/v2/schemas/image``); any
other key is an extra property whose value must be a string. Some core attributes are read-only
(the server sets them), some names are reserved, and the ``os_glance`` prefix belongs to the
server. The checks here are pure and raise :class:`ApiError` with Glance's status and words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cloud.api.errors import ApiError

CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
VISIBILITIES = ("community", "public", "private", "shared")
STATUSES = (
    "queued",
    "saving",
    "active",
    "killed",
    "deleted",
    "uploading",
    "importing",
    "pending_delete",
    "deactivated",
)
MEMBER_STATUSES = ("pending", "accepted", "rejected")
UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)
RESERVED_NAMESPACE = "os_glance"
MAX_INT = 2**31 - 1  # min_disk and min_ram are 32-bit columns in Glance

# Attributes the server sets; a create or a PATCH naming one is refused (403).
READ_ONLY = frozenset(
    {
        "created_at",
        "updated_at",
        "status",
        "checksum",
        "size",
        "virtual_size",
        "os_hash_algo",
        "os_hash_value",
        "direct_url",
        "self",
        "file",
        "schema",
        "stores",
    }
)
# Names no client may use as an attribute or extra property (403).
RESERVED = frozenset({"location", "deleted", "deleted_at"})
# Core attributes a client may set on create (beside ``tags``) and change with PATCH.
WRITABLE = (
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "owner",
    "tags",
)


def _nullable_string(description: str, max_length: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["null", "string"], "description": description}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


BASE_PROPERTIES: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
    "name": _nullable_string("Descriptive name for the image", 255),
    "status": {
        "type": "string",
        "readOnly": True,
        "description": "Status of the image",
        "enum": list(STATUSES),
    },
    "visibility": {
        "type": "string",
        "description": "Scope of image accessibility",
        "enum": list(VISIBILITIES),
    },
    "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
    "os_hidden": {
        "type": "boolean",
        "description": "If true, image will not appear in default image list response.",
    },
    "checksum": {**_nullable_string("md5 hash of image contents.", 32), "readOnly": True},
    "os_hash_algo": {
        **_nullable_string("Algorithm to calculate the os_hash_value", 64),
        "readOnly": True,
    },
    "os_hash_value": {
        **_nullable_string(
            "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
            128,
        ),
        "readOnly": True,
    },
    "owner": _nullable_string("Owner of the image", 255),
    "size": {
        "type": ["null", "integer"],
        "readOnly": True,
        "description": "Size of image file in bytes",
    },
    "virtual_size": {
        "type": ["null", "integer"],
        "readOnly": True,
        "description": "Virtual size of image in bytes",
    },
    "container_format": {
        "type": ["null", "string"],
        "description": "Format of the container",
        "enum": [None, *CONTAINER_FORMATS],
    },
    "disk_format": {
        "type": ["null", "string"],
        "description": "Format of the disk",
        "enum": [None, *DISK_FORMATS],
    },
    "created_at": {
        "type": "string",
        "readOnly": True,
        "description": "Date and time of image registration",
    },
    "updated_at": {
        "type": "string",
        "readOnly": True,
        "description": "Date and time of the last image modification",
    },
    "tags": {
        "type": "array",
        "description": "List of strings related to the image",
        "items": {"type": "string", "maxLength": 255},
    },
    "direct_url": {
        "type": "string",
        "readOnly": True,
        "description": "URL to access the image file kept in external store",
    },
    "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
    "min_disk": {
        "type": "integer",
        "description": "Amount of disk space (in GB) required to boot image.",
    },
    "self": {"type": "string", "readOnly": True, "description": "An image self url"},
    "file": {"type": "string", "readOnly": True, "description": "An image file url"},
    "stores": {
        "type": "string",
        "readOnly": True,
        "description": "Store in which image data resides.  Only present when the operator has "
        "enabled multiple stores.  May be a comma-separated list of store identifiers.",
    },
    "schema": {"type": "string", "readOnly": True, "description": "An image schema url"},
    "locations": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "url": {"type": "string", "maxLength": 255},
                "metadata": {"type": "object"},
            },
            "required": ["url", "metadata"],
        },
        "description": "A set of URLs to access the image file kept in external store",
    },
}
EXTRA_PROPERTY: dict[str, Any] = {"type": "string"}

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer" and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[name])


def schema_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under ``schema`` (jsonschema's words), or None."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, n) for n in names):
            return f"{value!r} is not of type {', '.join(repr(n) for n in names)}"
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        return f"{value!r} is not one of {enum!r}"
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{value!r} is too long"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{value!r} does not match {schema['pattern']!r}"
    if isinstance(value, list) and "items" in schema:
        for item in value:
            problem = schema_problem(item, schema["items"])
            if problem is not None:
                return problem
    if isinstance(value, dict) and "properties" in schema:
        for key in schema.get("required", ()):
            if key not in value:
                return f"{key!r} is a required property"
        for key, sub in schema["properties"].items():
            if key in value and (problem := schema_problem(value[key], sub)) is not None:
                return problem
    return None


def has_nul(value: Any) -> bool:
    """Whether a string (or a list's string) holds a NUL, which PostgreSQL text cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    return isinstance(value, list) and any(has_nul(item) for item in value)


def check_value(name: str, value: Any) -> None:
    """400 unless ``value`` fits attribute ``name`` (an extra property: a string)."""
    if has_nul(name) or has_nul(value):
        raise ApiError(400, f"Attribute '{name}' must not contain NUL characters.")
    problem = schema_problem(value, BASE_PROPERTIES.get(name, EXTRA_PROPERTY))
    if problem is not None:
        raise ApiError(400, f"Provided object does not match schema 'image': {problem}")
    if name in ("min_disk", "min_ram") and isinstance(value, int):
        if value < 0:
            raise ApiError(
                400, f"Invalid value '{value}' for parameter '{name}': Cannot be a negative value"
            )
        if value > MAX_INT:
            raise ApiError(400, f"'{name}' value out of range, must not exceed {MAX_INT}")


def check_property_name(name: str) -> None:
    """403 for a reserved name, 400 for an over-long one (extra properties only)."""
    if name in RESERVED or name.startswith(RESERVED_NAMESPACE):
        raise ApiError(403, f"Attribute '{name}' is reserved.")
    if len(name) > 255:
        raise ApiError(400, "Custom property should not be greater than 255 characters.")


def check_create(body: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """A create request's (core attributes, extra properties, tags), as Glance checks them.

    ``id`` may be given (a UUID); read-only attributes are refused (403), reserved names too.
    """
    if not isinstance(body, dict):
        raise ApiError(
            400, f"Provided object does not match schema 'image': {body!r} is not of type 'object'"
        )
    for key in ("direct_url", "self", "file", "schema", "stores"):
        if key in body:
            raise ApiError(403, f"Attribute '{key}' is read-only.")
    for key, value in body.items():
        check_value(key, value)
    core: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, value in body.items():
        if key in READ_ONLY:
            raise ApiError(403, f"Attribute '{key}' is read-only.")
        if key == "tags":
            continue
        if key == "id" or key in WRITABLE:
            core[key] = value
        elif key == "locations":
            raise ApiError(403, "Attribute 'locations' is reserved.")
        else:
            check_property_name(key)
            extra[key] = value
    return core, extra, unique_tags(body.get("tags", []))


def unique_tags(tags: list[str]) -> list[str]:
    """Tags are a set: first occurrence wins, order kept."""
    return list(dict.fromkeys(tags))
