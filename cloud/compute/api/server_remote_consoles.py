"""Remote consoles: ``POST /servers/{id}/remote-consoles`` (2.6+) and ``os-getVNCConsole`` (to 2.5).

Only noVNC is served (Nova with VNC enabled, SPICE, RDP, serial and MKS disabled): other protocols
and types are the 400s Nova answers then. The URL is the console proxy's page
(:mod:`cloud.console.proxy`) with a one-time token (:mod:`cloud.console.tokens`) bound to the
instance, its host and the VNC address that host gave: the address is a read the host answers
(:mod:`cloud.compute.host_reads`), so a dead host is a 409 after ``console_output_timeout_s``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import RootModel

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE, router
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import not_found, placed_server
from cloud.compute.api.server_actions import ServerAction, action
from cloud.compute.api.server_images import invalid
from cloud.compute.host_reads import ask_host
from cloud.conductor import states
from cloud.console.tokens import ConsoleTarget, mint
from schemas.compute_consoles import GetVncConsole

REMOTE_CONSOLES = (2, 6)
MKS = (2, 8)
SPICE_DIRECT = (2, 99)
# Nova's schema enums (remote_consoles.create_v26 / v28, get_vnc_console).
_PROTOCOLS = ("vnc", "spice", "rdp", "serial")
_TYPES = ("novnc", "xvpvnc", "rdp-html5", "spice-html5", "serial")
_LEGACY_TYPES = ("novnc", "xvpvnc")
# Nova's compute API refuses consoles of an instance going away or moving.
_BUSY = (states.DELETING, "migrating")


class RemoteConsoleBody(RootModel[Any]):
    """``{"remote_console": {"protocol": "vnc", "type": "novnc"}}``, checked by hand as Nova's
    schema does (its messages, its 400s)."""


def _enums(ver: tuple[int, int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    protocols: tuple[str, ...] = _PROTOCOLS
    types: tuple[str, ...] = _TYPES
    if ver >= MKS:
        protocols, types = (*protocols, "mks"), (*types, "webmks")
    if ver >= SPICE_DIRECT:
        types = (*types, "spice-direct")
    return protocols, types


def _object(field: str, value: Any, allowed: set[str], required: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise invalid(field, f"Value: {value!r}. {value!r} is not of type 'object'")
    for key in required:
        if key not in value:
            raise invalid(field, f"Value: {value!r}. '{key}' is a required property")
    extra = sorted(set(value) - allowed)
    if extra:
        raise invalid(field, f"Additional properties are not allowed ({extra!r} were unexpected)")


def _enum(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise invalid(field, f"Value: {value!r}. {value!r} is not one of {list(allowed)!r}")
    return value


def parse_remote_console(body: Any, ver: tuple[int, int]) -> tuple[str, str]:
    """(protocol, type) of a remote-consoles body, or Nova's 400."""
    _object("remote_console", body, {"remote_console"}, ("remote_console",))
    console = body["remote_console"]
    _object("remote_console", console, {"protocol", "type"}, ("protocol", "type"))
    protocols, types = _enums(ver)
    return _enum("protocol", console["protocol"], protocols), _enum("type", console["type"], types)


def parse_legacy(body: Any) -> str:
    """The ``type`` of an ``os-getVNCConsole`` action, or Nova's 400."""
    _object("os-getVNCConsole", body, {"type"}, ("type",))
    return _enum("type", body["type"], _LEGACY_TYPES)


async def vnc_console_url(req: ApiRequest[Any], server_id: str, protocol: str, kind: str) -> str:
    """A console URL with a fresh one-time token, after the checks Nova makes in its order."""
    svc = req.app[COMPUTE]
    row = await placed_server(svc.store.pool, req, server_id)
    host = row["host"]
    if row["task_state"] in _BUSY:
        raise ApiError(
            409,
            f"Cannot 'get_{protocol}_console' instance {server_id} while it is in task_state "
            f"{row['task_state']}",
        )
    if protocol != "vnc":  # SPICE, RDP, serial, MKS: disabled in this cloud, as Nova says then
        raise ApiError(400, f"Unavailable console type {kind}.")
    if kind != "novnc":
        raise ApiError(400, f"Invalid console type {kind}")
    request_id = str(uuid.uuid4())
    timeout = svc.settings.console_output_timeout_s
    request = GetVncConsole(instance_id=server_id, request_id=request_id)
    reply = await ask_host(svc.store, host, request, request_id, timeout)
    if reply is None:
        raise ApiError(
            409,
            f"Instance {server_id} is not ready: its host {host} did not answer within "
            f"{timeout:g}s",
        )
    error = reply["error"]
    if error == "not_found":
        raise not_found(server_id)
    if error == "unavailable":  # the guest has no VNC graphics (Nova's libvirt driver says so)
        raise ApiError(400, "Unavailable console type vnc.")
    if error is not None:
        raise ApiError(409, f"Instance {server_id} is not ready: {error}")
    where = json.loads(reply["output"])
    target = ConsoleTarget(server_id, host, str(where["host"]), int(where["port"]), kind)
    async with svc.store.pool.acquire() as conn:
        token = await mint(
            conn, target, now=svc.store.clock.now(), ttl_s=svc.settings.console_token_ttl_s
        )
    # noVNC's page convention (Nova's too): the websocket path, token included, in ``path``.
    path = quote(f"?token={token}", safe="")
    return f"{svc.settings.console_base_url()}/vnc_lite.html?path={path}"


@router.post(
    "/servers/{id}/remote-consoles",
    body=RemoteConsoleBody,
    status=200,
    errors=(400, 404, 409, 501),
)
async def create_remote_console(req: ApiRequest[RemoteConsoleBody]) -> dict[str, Any]:
    """200 ``{"remote_console": {"protocol", "type", "url"}}`` (Nova 2.6+; a 404 below)."""
    ver = version(req)
    if ver < REMOTE_CONSOLES:
        raise ApiError(404, "The resource could not be found.")
    protocol, kind = parse_remote_console(req.body.root, ver)
    url = await vnc_console_url(req, req.params["id"], protocol, kind)
    return {"remote_console": {"protocol": protocol, "type": kind, "url": url}}


@action("os-getVNCConsole")
async def get_vnc_console(req: ApiRequest[ServerAction], server_id: str, body: Any) -> web.Response:
    """200 ``{"console": {"type", "url"}}``; Nova serves the action up to 2.5 only."""
    if version(req) >= REMOTE_CONSOLES:
        raise ApiError(404, "The resource could not be found.")
    kind = parse_legacy(body)
    url = await vnc_console_url(req, server_id, "vnc", kind)
    # 200, not the action route's usual 202: the answer is here.
    return web.json_response({"console": {"type": kind, "url": url}})
