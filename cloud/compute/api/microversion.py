"""Nova microversions: ``OpenStack-API-Version: compute 2.X`` negotiation and response headers.

The client asks with ``OpenStack-API-Version: compute X.Y`` (or the legacy
``X-OpenStack-Nova-API-Version: X.Y``); ``latest`` means :data:`MAX_VERSION`; no header means
:data:`MIN_VERSION`. A well-formed version outside the range is a 406 in Nova's words, a malformed
one a 400. Every response of the v2.1 router names the version it was served at and varies on both
headers; handlers read the negotiated version with :func:`version`.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from cloud.api.errors import ApiError
from cloud.api.router import REQUEST_ID, ApiRequest, Router

Version = tuple[int, int]

MIN_VERSION: Version = (2, 1)
# Every flavor and keypair behaviour up to here is implemented (see the package's modules).
MAX_VERSION: Version = (2, 92)

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
VARY = f"{HEADER}, {LEGACY_HEADER}"
SERVICE = "compute"

NEGOTIATED = web.RequestKey("compute_version", tuple)  # a Version
_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def text(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


def parse(value: str) -> Version | None:
    """``"2.55"`` -> ``(2, 55)``; ``None`` when it is not a version number (or ``latest``)."""
    value = value.strip()
    if value.lower() == "latest":
        return MAX_VERSION
    match = _VERSION_RE.match(value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def requested(headers: MultiMapping[str]) -> str | None:
    """The compute version the client asked for (raw text), or ``None`` when it asked none.

    ``OpenStack-API-Version`` may list several services (``compute 2.5, volume 3.1``) and wins
    over the legacy header.
    """
    for value in headers.getall(HEADER, []):
        for item in value.split(","):
            service, _, ver = item.strip().partition(" ")
            if service.lower() == SERVICE:
                return ver.strip()
    legacy = headers.get(LEGACY_HEADER)
    return legacy.strip() if legacy is not None else None


def negotiate(raw: str | None) -> Version:
    """The version to serve for a request header value; 400 or 406 as Nova answers."""
    if raw is None:
        return MIN_VERSION
    ver = parse(raw)
    if ver is None:
        raise ApiError(
            400,
            f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum.",
        )
    if not MIN_VERSION <= ver <= MAX_VERSION:
        raise ApiError(
            406,
            f"Version {text(ver)} is not supported by the API. Minimum is {text(MIN_VERSION)} "
            f"and maximum is {text(MAX_VERSION)}.",
        )
    return ver


def version(req: ApiRequest[Any]) -> Version:
    """The negotiated version of a request: ``version(req) >= (2, 55)``."""
    ver = req.raw.get(NEGOTIATED)
    if ver is None:
        ver = negotiate(requested(req.raw.headers))
    return (int(ver[0]), int(ver[1]))


def _before(request: web.Request) -> None:
    raw = requested(request.headers)
    ver = parse(raw) if raw is not None else MIN_VERSION
    if ver is not None:  # echoed in the headers even when refused, as Nova does
        request[NEGOTIATED] = ver
    request[NEGOTIATED] = negotiate(raw)


def _after(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers["x-compute-request-id"] = request_id
    ver = request.get(NEGOTIATED)
    if ver is None and response.status != 401:  # unmatched path: what the client asked for
        raw = requested(request.headers)
        ver = MIN_VERSION if raw is None else parse(raw)
    if ver is None:
        return
    shown = f"{ver[0]}.{ver[1]}"
    response.headers[HEADER] = f"{SERVICE} {shown}"
    response.headers[LEGACY_HEADER] = shown
    response.headers["Vary"] = VARY


def install(router: Router) -> None:
    """Negotiate the microversion for every operation of ``router`` and label its responses."""
    router.set_hooks(before=_before, after=_after)
