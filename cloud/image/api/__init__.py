"""Glance v2 under ``/image/v2``: one router shared by the modules of this package."""

from __future__ import annotations

from aiohttp import web

from cloud.api.router import Router
from cloud.image.faults import glance_fault
from cloud.image.service import ImageService

PREFIX = "/image/v2"
IMAGES = web.AppKey("images", ImageService)

router = Router("image", PREFIX, glance_fault)
discovery = Router("image", "/image", glance_fault)


def routers() -> list[Router]:
    """Both image routers, with every module's operations registered."""
    from cloud.image.api import (  # noqa: F401  (importing registers the operations)
        data,
        images,
        imports,
        members,
        schemas,
        tags,
        versions,
    )

    return [discovery, router]
