"""Version discovery exactly as Keystone publishes it (``/``, ``/identity``, ``/identity/v3``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cloud.api.router import ApiRequest
from cloud.identity.api import PREFIX, discovery

V3 = {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z"}
MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def _version(req: ApiRequest[Any]) -> dict[str, Any]:
    href = f"{req.base_url()}{PREFIX}/"
    return {**V3, "links": [{"rel": "self", "href": href}], "media-types": MEDIA}


def _choices(req: ApiRequest[Any]) -> web.Response:
    body = {"versions": {"values": [_version(req)]}}
    headers = {"Location": f"{req.base_url()}{PREFIX}/", "Vary": "X-Auth-Token"}
    return web.json_response(body, status=300, headers=headers)


@discovery.get("/", auth=False, status=300)
async def root_versions(req: ApiRequest[Any]) -> web.Response:
    """The versions of the identity API (the root answers as Keystone does)."""
    return _choices(req)


@discovery.get("/identity", auth=False, status=300)
async def identity_versions(req: ApiRequest[Any]) -> web.Response:
    """The versions of the identity API."""
    return _choices(req)


@discovery.get("/identity/", auth=False, status=300)
async def identity_versions_slash(req: ApiRequest[Any]) -> web.Response:
    """The versions of the identity API."""
    return _choices(req)


@discovery.get(PREFIX, auth=False)
async def identity_v3(req: ApiRequest[Any]) -> web.Response:
    """The identity v3 version document."""
    return web.json_response({"version": _version(req)}, headers={"Vary": "X-Auth-Token"})


@discovery.get(PREFIX + "/", auth=False)
async def identity_v3_slash(req: ApiRequest[Any]) -> web.Response:
    """The identity v3 version document."""
    return web.json_response({"version": _version(req)}, headers={"Vary": "X-Auth-Token"})
