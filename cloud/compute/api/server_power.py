"""Power actions ``os-stop`` and ``os-start``: operations on an existing instance like the others.

The API sets the task state (powering-off / powering-on) and tells the host
(:func:`cloud.compute.api.server_lifecycle.operate`); the conductor records the outcome, and a
durable deadline clears the task state if the host never answers.
"""

from __future__ import annotations

from typing import Any

from cloud.api.router import ApiRequest
from cloud.compute.api.server_actions import ServerAction, action
from cloud.compute.api.server_lifecycle import operate


@action("os-stop")
async def stop(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await operate(req, server_id, "stop")


@action("os-start")
async def start(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await operate(req, server_id, "start")
