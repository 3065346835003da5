"""``POST /servers/{id}/action``: one route, many actions, each registered by the module that owns it.

A module declares ``@action("os-stop")`` on ``async def handler(req, server_id, body)``; ``body``
is the action's value (``null`` for most). The handler returns what the route answers: None (202,
no body), or a mapping / ``web.Response`` when the action has a reply (console output, rebuild,
createImage). Unknown actions are a 400, as in Nova.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import RootModel

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest, Reply
from cloud.compute.api import COMPUTE, router
from cloud.compute.api.server_access import ensure_unlocked


class ServerAction(RootModel[dict[str, Any]]):
    """``{"os-stop": null}``, ``{"reboot": {"type": "SOFT"}}``: one action per request."""


# Actions a locked server still accepts from its non-admin users: those Nova's compute API does
# not guard with check_instance_lock (lock state itself, snapshots, consoles, admin-only repairs).
LOCK_EXEMPT = frozenset(
    {
        "lock",
        "unlock",
        "createImage",
        "createBackup",
        "os-getConsoleOutput",
        "os-getVNCConsole",
        "os-getSPICEConsole",
        "os-getRDPConsole",
        "os-getSerialConsole",
        "os-resetState",
        "os-resetNetwork",
        "injectNetworkInfo",
        "evacuate",
        "restore",
    }
)

ActionHandler = Callable[[ApiRequest[ServerAction], str, Any], Awaitable[Reply]]
_ACTIONS: dict[str, ActionHandler] = {}


def action(name: str) -> Callable[[ActionHandler], ActionHandler]:
    """Register the handler of the action ``name`` (each name once)."""

    def register(handler: ActionHandler) -> ActionHandler:
        if name in _ACTIONS:
            raise ValueError(f"server action {name!r} is registered twice")
        _ACTIONS[name] = handler
        return handler

    return register


def registered() -> list[str]:
    return sorted(_ACTIONS)


@router.post("/servers/{id}/action", body=ServerAction, status=202, errors=(400, 403, 404, 409))
async def server_action(req: ApiRequest[ServerAction]) -> Reply:
    """Run one server action; most are carried out by the host asynchronously (202)."""
    if len(req.body.root) != 1:
        raise ApiError(400, "Exactly one action is required.")
    name, value = next(iter(req.body.root.items()))
    handler = _ACTIONS.get(name)
    if handler is None:
        raise ApiError(400, f"There is no such action: {name}")
    if name not in LOCK_EXEMPT:
        async with req.app[COMPUTE].store.pool.acquire() as conn:
            await ensure_unlocked(conn, req, req.params["id"])
    return await handler(req, req.params["id"], value)
