"""``os-getConsoleOutput``: the console log of a server, read on its compute host.

A read the host answers (:mod:`cloud.compute.host_reads`): ``compute.get_console_output``
(request id, length) to ``compute.<host>``, answered by ``compute.console_output_ready`` through
the conductor and PostgreSQL. Without an answer within ``console_output_timeout_s`` the API answers
409 (the instance is not ready to be asked), so a dead host never makes the call hang.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE
from cloud.compute.api.server_access import placed_server
from cloud.compute.api.server_actions import ServerAction, action
from cloud.compute.api.server_images import invalid
from cloud.compute.host_reads import ask_host, wait_reply
from schemas.compute_images import GetConsoleOutput

# Nova strips what XML could not carry, and kept doing so for JSON.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f]")
_INT = re.compile(r"^-?[0-9]+$")
_wait = wait_reply  # the name the image saga's tests wait with


def parse_length(body: Any) -> int | None:
    """Nova's ``length``: an integer >= -1, a string of one, or null; -1 and null mean all."""
    if not isinstance(body, dict):
        raise invalid("os-getConsoleOutput", f"Value: {body!r}. It is not of type 'object'")
    unknown = set(body) - {"length"}
    if unknown:
        raise invalid(
            "os-getConsoleOutput", f"Additional properties are not allowed ({sorted(unknown)})"
        )
    value = body.get("length")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid("length", f"Value: {value!r}. It is not of type 'integer', 'string'")
    if isinstance(value, str):
        if not _INT.match(value):
            raise invalid("length", f"Value: {value}. It does not match '^-?[0-9]+$'")
        value = int(value)
    if value < -1:
        raise invalid("length", f"Value: {value}. It is less than the minimum of -1")
    return None if value == -1 else value


@action("os-getConsoleOutput")
async def console_output(req: ApiRequest[ServerAction], server_id: str, body: Any) -> web.Response:
    """200 ``{"output": "..."}`` with the last ``length`` lines of the server's console."""
    length = parse_length(body)
    svc = req.app[COMPUTE]
    host = (await placed_server(svc.store.pool, req, server_id))["host"]
    request_id = str(uuid.uuid4())
    timeout = svc.settings.console_output_timeout_s
    request = GetConsoleOutput(instance_id=server_id, request_id=request_id, length=length)
    reply = await ask_host(svc.store, host, request, request_id, timeout)
    if reply is None:
        raise ApiError(
            409,
            f"Instance {server_id} is not ready: its host {host} did not answer within "
            f"{timeout:g}s",
        )
    if reply["error"] == "not_found":
        raise ApiError(404, "Guest does not have a console available.")
    if reply["error"] is not None:
        raise ApiError(
            409, f"Console output of instance {server_id} is unavailable: {reply['error']}"
        )
    # 200, not the action route's usual 202: the answer is here.
    return web.json_response({"output": _CONTROL.sub("", reply["output"] or "")})
