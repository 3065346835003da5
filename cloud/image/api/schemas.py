"""``/v2/schemas/*``: the JSON schemas (draft 4) of images and members, as Glance serves them.

Clients read ``/v2/schemas/image`` to tell core attributes from extra properties (openstacksdk,
python-openstackclient); ``additionalProperties`` says extra properties are strings.
"""

from __future__ import annotations

import copy
from typing import Any

from cloud.api.router import ApiRequest
from cloud.image import attributes
from cloud.image.api import router

MEMBER_PROPERTIES: dict[str, Any] = {
    "member_id": {
        "type": "string",
        "description": "An identifier for the image member (tenantId)",
    },
    "image_id": {
        "type": "string",
        "description": "An identifier for the image",
        "pattern": attributes.UUID_PATTERN,
    },
    "created_at": {"type": "string", "description": "Date and time of image member creation"},
    "updated_at": {
        "type": "string",
        "description": "Date and time of last modification of image member",
    },
    "status": {
        "type": "string",
        "description": "The status of this image member",
        "enum": list(attributes.MEMBER_STATUSES),
    },
    "schema": {"readOnly": True, "type": "string"},
}


def image_schema() -> dict[str, Any]:
    return {
        "name": "image",
        "properties": copy.deepcopy(attributes.BASE_PROPERTIES),
        "additionalProperties": dict(attributes.EXTRA_PROPERTY),
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    return {"name": "member", "properties": copy.deepcopy(MEMBER_PROPERTIES)}


def members_schema() -> dict[str, Any]:
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


@router.get("/schemas/image")
async def get_image_schema(req: ApiRequest[Any]) -> dict[str, Any]:
    """The JSON schema of an image."""
    return image_schema()


@router.get("/schemas/images")
async def get_images_schema(req: ApiRequest[Any]) -> dict[str, Any]:
    """The JSON schema of an image list."""
    return images_schema()


@router.get("/schemas/member")
async def get_member_schema(req: ApiRequest[Any]) -> dict[str, Any]:
    """The JSON schema of an image member."""
    return member_schema()


@router.get("/schemas/members")
async def get_members_schema(req: ApiRequest[Any]) -> dict[str, Any]:
    """The JSON schema of an image member list."""
    return members_schema()
