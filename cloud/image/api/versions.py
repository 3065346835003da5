"""Version discovery at the image service's root (``/image``), as Glance publishes it.

``/image`` and ``/image/`` answer ``300 Multiple Choices`` with the version list, ``/image/versions``
the same list with ``200``; every version links to ``<base>/image/v2/``. The newest version listed
is the newest whose behaviour this service has in full: 2.7 (hidden images, multihash; 2.6 brought
interoperable image import). Glance's later versions add stores (2.8-2.13), the cache API (2.14,
2.16, 2.18), quota usage (2.15) and location APIs (2.17).
"""

from __future__ import annotations

from typing import Any

from cloud.api.router import ApiRequest
from cloud.image.api import PREFIX, discovery

CURRENT = "2.7"
SUPPORTED = ("2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")


def versions(req: ApiRequest[Any]) -> dict[str, Any]:
    href = req.base_url() + PREFIX + "/"
    listed = [(CURRENT, "CURRENT"), *((v, "SUPPORTED") for v in SUPPORTED)]
    return {
        "versions": [
            {"id": f"v{version}", "status": status, "links": [{"rel": "self", "href": href}]}
            for version, status in listed
        ]
    }


@discovery.get("", auth=False, status=300)
async def image_versions_root(req: ApiRequest[Any]) -> dict[str, Any]:
    """The image API versions (300 Multiple Choices)."""
    return versions(req)


@discovery.get("/", auth=False, status=300)
async def image_versions_slash(req: ApiRequest[Any]) -> dict[str, Any]:
    """The image API versions (300 Multiple Choices)."""
    return versions(req)


@discovery.get("/versions", auth=False)
async def image_versions(req: ApiRequest[Any]) -> dict[str, Any]:
    """The image API versions."""
    return versions(req)
