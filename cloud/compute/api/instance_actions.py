"""``GET /servers/{id}/os-instance-actions[/{request_id}]``, served from the event log.

The events of the stream ``instance:<id>`` are folded into actions, one per correlation id (the API
request id, see :mod:`cloud.compute.action_log`). Explicitly recorded actions
(``compute.instance.action_*``) come with their steps; the build and the delete, recorded by their
own events, are read as Nova's ``create`` and ``delete`` actions with Nova's event names.

Per microversion: 2.51 shows events to non-admins (without traceback), 2.58 adds ``updated_at``
and ``limit``/``marker``/``changes-since`` paging, 2.62 ``host`` (admins) and ``hostId``, 2.66
``changes-before``, 2.84 ``details``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest, QueryParam
from cloud.compute.api import COMPUTE, router
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import is_admin, not_found, scope_of
from cloud.compute.api.server_views import host_id
from cloud.store.conn import DbConnection

EVENTS_FOR_USERS, PAGING, EVENT_HOST, CHANGES_BEFORE, EVENT_DETAILS = (
    (2, 51),
    (2, 58),
    (2, 62),
    (2, 66),
    (2, 84),
)
BUILD_STEPS = ("conductor_schedule_and_build_instances", "compute__do_build_and_run_instance")


@dataclass
class Step:
    event: str
    start_time: datetime
    host: str | None = None
    finish_time: datetime | None = None
    error: str | None = None
    details: str | None = None

    @property
    def result(self) -> str | None:
        if self.finish_time is None:
            return None
        return "Error" if self.error is not None else "Success"


@dataclass
class Action:
    action: str
    request_id: str
    start_time: datetime
    updated_at: datetime
    project_id: str | None = None
    user_id: str | None = None
    steps: list[Step] = field(default_factory=list)

    def start(self, event: str, at: datetime, host: str | None = None) -> None:
        self.steps.append(Step(event, at, host))

    def finish(
        self, event: str | None, at: datetime, error: str | None = None, **extra: Any
    ) -> None:
        """End the newest open step named ``event`` (any open step when None)."""
        for step in reversed(self.steps):
            if step.finish_time is None and event in (None, step.event):
                step.finish_time, step.error = at, error
                step.host = extra.get("host") or step.host
                step.details = extra.get("details")
                return
        if event is not None:  # finished without a recorded start: show it anyway
            self.steps.append(Step(event, at, extra.get("host"), at, error, extra.get("details")))


def fold(rows: list[Any], owner: dict[str, Any]) -> list[Action]:
    """The instance's actions in the order they started, from its events in log order."""
    actions: dict[str, Action] = {}
    for row in rows:
        kind, at, corr = row["kind"], row["occurred_at"], row["correlation_id"]
        body = json.loads(row["body"]) if isinstance(row["body"], str) else dict(row["body"])
        act = actions.get(corr)
        name = {
            "compute.instance.requested": "create",
            "compute.instance.delete_requested": "delete",
            "compute.instance.action_started": body.get("action"),
        }.get(kind)
        if name is not None and act is None:
            act = actions[corr] = Action(name, corr, at, at, owner["project_id"], owner["user_id"])
        if act is None:
            continue  # not part of an action (reports, metadata changes, ...)
        act.updated_at = at
        if kind == "compute.instance.action_started":
            act.action, act.request_id = body["action"], body.get("request_id") or corr
            act.user_id = body.get("user_id") or act.user_id
            act.project_id = body.get("project_id") or act.project_id
        elif kind == "compute.instance.requested":
            act.start(BUILD_STEPS[0], at)
        elif kind == "compute.instance.scheduled":
            act.finish(BUILD_STEPS[0], at, host=body.get("host"))  # where it was placed
            act.start(BUILD_STEPS[1], at, body.get("host"))
        elif kind == "compute.instance.schedule_failed":
            act.finish(BUILD_STEPS[0], at, body.get("reason") or "NoValidHost")
        elif kind == "compute.instance.activated":
            act.finish(BUILD_STEPS[1], at, host=body.get("host"))
        elif kind == "compute.instance.spawn_failed":
            act.finish(BUILD_STEPS[1], at, body.get("reason") or "spawn failed")
        elif kind == "compute.instance.errored":
            act.finish(None, at, body.get("reason") or "error")  # whichever step was open
        elif kind == "compute.instance.delete_requested":
            act.start("compute_terminate_instance", at)
        elif kind == "compute.instance.deleted":
            act.finish("compute_terminate_instance", at, host=body.get("host"))
        elif kind == "compute.instance.action_event_started":
            act.start(body["event"], at, body.get("host"))
        elif kind == "compute.instance.action_event_finished":
            act.finish(
                body["event"],
                at,
                body.get("error"),
                host=body.get("host"),
                details=body.get("details"),
            )
    return list(actions.values())


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def action_view(req: ApiRequest[Any], act: Action, instance_id: str) -> dict[str, Any]:
    failed = any(step.error is not None for step in act.steps)
    view: dict[str, Any] = {
        "action": act.action,
        "instance_uuid": instance_id,
        "message": "Error" if failed else None,
        "project_id": act.project_id,
        "request_id": act.request_id,
        "start_time": _time(act.start_time),
        "user_id": act.user_id,
    }
    if version(req) >= PAGING:
        view["updated_at"] = _time(act.updated_at)
    return view


def event_view(req: ApiRequest[Any], step: Step, project_id: str, *, admin: bool) -> dict[str, Any]:
    ver = version(req)
    view: dict[str, Any] = {
        "event": step.event,
        "start_time": _time(step.start_time),
        "finish_time": _time(step.finish_time),
        "result": step.result,
    }
    if admin:
        view["traceback"] = step.error
    if ver >= EVENT_HOST:
        if admin:
            view["host"] = step.host or ""
        view["hostId"] = host_id(project_id, step.host)
    if ver >= EVENT_DETAILS:
        view["details"] = step.details if step.details is not None else step.error
    return view


async def _load(
    conn: DbConnection, req: ApiRequest[Any], server_id: str
) -> tuple[Any, list[Action]]:
    # Deleted servers keep their actions (Nova shows them from 2.21 on).
    owner = await conn.fetchrow(
        """SELECT id, project_id, user_id FROM cmp_instances
           WHERE id = $1 AND ($2::text IS NULL OR project_id = $2)""",
        server_id,
        scope_of(req),
    )
    if owner is None:
        raise not_found(server_id)
    rows = await conn.fetch(
        """SELECT kind, body::text AS body, correlation_id, occurred_at FROM events
           WHERE stream_id = $1 ORDER BY seq""",
        f"instance:{server_id}",
    )
    return owner, fold(list(rows), dict(owner))


def _parse_time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"Invalid input for query parameters {name}. Value: {value}.") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _page(req: ApiRequest[Any], actions: list[Action], server_id: str) -> dict[str, Any]:
    """Newest first; from 2.58 ``limit``/``marker``/``changes-since`` (2.66 ``changes-before``)."""
    ordered = sorted(actions, key=lambda a: a.start_time, reverse=True)
    ver, query = version(req), req.query
    if ver < PAGING:
        return {"instanceActions": [action_view(req, a, server_id) for a in ordered]}
    since = (
        _parse_time("changes-since", query["changes-since"]) if "changes-since" in query else None
    )
    before = None
    if ver >= CHANGES_BEFORE and "changes-before" in query:
        before = _parse_time("changes-before", query["changes-before"])
        if since is not None and since > before:
            raise ApiError(
                400, "The value of changes-since must be less than or equal to changes-before."
            )
    chosen = [
        a
        for a in ordered
        if (since is None or a.updated_at >= since) and (before is None or a.updated_at <= before)
    ]
    marker = query.get("marker")
    if marker is not None:
        ids = [a.request_id for a in chosen]
        if marker not in ids:
            raise ApiError(400, f"Marker {marker} could not be found.")
        chosen = chosen[ids.index(marker) + 1 :]
    limit: int | None = None
    if "limit" in query:
        raw = query["limit"]
        if not raw.isdigit():
            raise ApiError(400, f"Invalid input for query parameters limit. Value: {raw}.")
        limit = int(raw)
    body: dict[str, Any] = {"instanceActions": []}
    shown = chosen if limit is None else chosen[:limit]
    body["instanceActions"] = [action_view(req, a, server_id) for a in shown]
    if limit is not None and shown and len(chosen) > limit:
        params = {k: v for k, v in query.items() if k != "marker"}
        params["marker"] = shown[-1].request_id
        href = req.url(f"/servers/{server_id}/os-instance-actions") + "?" + urlencode(params)
        body["links"] = [{"href": href, "rel": "next"}]
    return body


@router.get(
    "/servers/{id}/os-instance-actions",
    errors=(400, 404),
    query=(
        QueryParam("limit", {"type": "integer", "minimum": 0}, "2.58: page size."),
        QueryParam("marker", description="2.58: the request id to continue after."),
        QueryParam("changes-since", description="2.58: ISO 8601, actions updated since."),
        QueryParam("changes-before", description="2.66: ISO 8601, actions updated before."),
    ),
)
async def list_actions(req: ApiRequest[None]) -> dict[str, Any]:
    """The server's actions, newest first (deleted servers included)."""
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.pool.acquire() as conn:
        _, actions = await _load(conn, req, server_id)
    return _page(req, actions, server_id)


@router.get("/servers/{id}/os-instance-actions/{request_id}", errors=(404,))
async def show_action(req: ApiRequest[None]) -> dict[str, Any]:
    """One action with its events, newest first as Nova orders them (non-admins see events from
    2.51, never tracebacks)."""
    server_id, request_id = req.params["id"], req.params["request_id"]
    async with req.app[COMPUTE].store.pool.acquire() as conn:
        owner, actions = await _load(conn, req, server_id)
    found = next((a for a in actions if a.request_id == request_id), None)
    if found is None:
        raise ApiError(404, f"Action for request_id {request_id} on instance {server_id} not found")
    admin = is_admin(req)
    view = action_view(req, found, server_id)
    if admin or version(req) >= EVENTS_FOR_USERS:
        newest_first = sorted(found.steps, key=lambda step: step.start_time, reverse=True)
        view["events"] = [
            event_view(req, step, owner["project_id"], admin=admin) for step in newest_first
        ]
    return {"instanceAction": view}
