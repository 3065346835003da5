"""Version discovery, as Nova publishes it.

``/compute`` and ``/compute/`` list both API versions (v2.0 ``SUPPORTED``, v2.1 ``CURRENT`` with
its microversion range); ``/compute/v2.1`` and ``/compute/v2.1/`` describe v2.1 (no token needed;
the v2.1 router labels the response with the negotiated microversion).
"""

from __future__ import annotations

from typing import Any

from cloud.api.router import ApiRequest
from cloud.compute.api import PREFIX, discovery, router
from cloud.compute.api.microversion import MAX_VERSION, MIN_VERSION, install, text

install(router)

V21_UPDATED = "2013-07-23T11:33:21Z"


def _v21(req: ApiRequest[Any]) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": text(MAX_VERSION),
        "min_version": text(MIN_VERSION),
        "updated": V21_UPDATED,
        "links": [{"rel": "self", "href": req.base_url() + PREFIX + "/"}],
    }


def _versions(req: ApiRequest[Any]) -> dict[str, Any]:
    v20 = {
        "id": "v2.0",
        "status": "SUPPORTED",
        "version": "",
        "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": req.base_url() + "/compute/v2/"}],
    }
    return {"versions": [v20, _v21(req)]}


def _version(req: ApiRequest[Any]) -> dict[str, Any]:
    doc = _v21(req)
    doc["links"].append(
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}
    )
    doc["media-types"] = [
        {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}
    ]
    return {"version": doc}


@discovery.get("", auth=False)
async def compute_versions_root(req: ApiRequest[Any]) -> dict[str, Any]:
    """The compute API versions."""
    return _versions(req)


@discovery.get("/", auth=False)
async def compute_versions_slash(req: ApiRequest[Any]) -> dict[str, Any]:
    """The compute API versions."""
    return _versions(req)


@router.get("", auth=False)
async def compute_version(req: ApiRequest[Any]) -> dict[str, Any]:
    """The compute API v2.1 and its microversion range."""
    return _version(req)


@router.get("/", auth=False)
async def compute_version_slash(req: ApiRequest[Any]) -> dict[str, Any]:
    """The compute API v2.1 and its microversion range."""
    return _version(req)
