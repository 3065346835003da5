"""Nova v2.1 under ``/compute/v2.1``: one router shared by the modules of this package."""

from __future__ import annotations

from aiohttp import web

from cloud.api.errors import nova_fault
from cloud.api.router import Router
from cloud.compute.service import ComputeService

PREFIX = "/compute/v2.1"
COMPUTE = web.AppKey("compute", ComputeService)

router = Router("compute", PREFIX, nova_fault)
discovery = Router("compute", "/compute", nova_fault)


def routers() -> list[Router]:
    """Both compute routers, with every module's operations registered."""
    from cloud.compute.api import (  # noqa: F401  (importing registers the operations)
        aggregates,
        availability_zones,
        flavor_access,
        flavor_extra_specs,
        flavors,
        hypervisors,
        instance_actions,
        keypairs,
        limits,
        os_services,
        quota_sets,
        server_actions,
        server_console,
        server_groups,
        server_images,
        server_lifecycle,
        server_lock,
        server_metadata,
        server_power,
        server_rebuild,
        server_remote_consoles,
        server_resize,
        server_shelve,
        server_tags,
        server_update,
        servers,
        usage,
        versions,
    )

    return [discovery, router]
