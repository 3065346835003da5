"""Keystone v3 under ``/identity/v3``: one router shared by the resource modules of this package."""

from __future__ import annotations

from aiohttp import web

from cloud.api.errors import keystone_fault
from cloud.api.router import Router
from cloud.identity.service import Identity

PREFIX = "/identity/v3"
IDENTITY = web.AppKey("identity", Identity)

router = Router("identity", PREFIX, keystone_fault)
discovery = Router("identity", "", keystone_fault)


def routers() -> list[Router]:
    """Both identity routers, with every resource module's operations registered."""
    from cloud.identity.api import (  # noqa: F401  (importing registers the operations)
        app_credentials,
        assignments,
        auth,
        catalog,
        credentials,
        domains,
        grants,
        groups,
        projects,
        roles,
        users,
        versions,
    )

    return [discovery, router]
