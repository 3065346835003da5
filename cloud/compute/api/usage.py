"""``/os-simple-tenant-usage``: per-project usage over a period, from the instance rows.

An instance counts from ``launched_at`` to ``terminated_at`` (or the end of the period), clipped
to ``[start, end]``; an instance that never launched costs nothing. Memory, disk and vCPUs come from
its flavor snapshot, so a later flavor change does not rewrite history. ``start``/``end`` default
to now (Nova's); ``detailed=1`` adds each server to the list (admin); show always has them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavors import enforce, service
from cloud.compute.api.os_services import timestamp

FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")


def _parse(raw: str | None, now: datetime) -> datetime:
    if not raw:
        return now
    for fmt in FORMATS:
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:  # clients also send isoformat() with an offset
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "Invalid StrTime: Datetime is in invalid format") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _period(req: ApiRequest[Any]) -> tuple[datetime, datetime, bool]:
    now = service(req).clock.now()
    start, end = _parse(req.query.get("start"), now), _parse(req.query.get("end"), now)
    # Nova reads the clock once per default, so two defaults make an (empty) valid period.
    if not start < end and ("start" in req.query or "end" in req.query):
        raise ApiError(400, "Invalid start time. The start time cannot occur after the end time.")
    detailed = req.query.get("detailed", "0").lower() in ("1", "true")
    return start, end, detailed


def _hours(row: Any, start: datetime, end: datetime) -> float:
    launched, terminated = row["launched_at"], row["terminated_at"]
    if launched is None or launched > end or (terminated is not None and terminated < start):
        return 0.0
    stop = min(end, terminated) if terminated is not None else end
    return max(0.0, float((stop - max(launched, start)).total_seconds()) / 3600.0)


def _server(row: Any, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
    flavor = json.loads(row["flavor"])
    ended = row["terminated_at"]
    started = row["launched_at"] or row["created_at"]
    return {
        "instance_id": row["id"],
        "name": row["name"],
        "hours": _hours(row, start, end),
        "memory_mb": flavor["ram_mb"],
        "local_gb": flavor["disk_gb"] + flavor.get("ephemeral_gb", 0),
        "vcpus": flavor["vcpus"],
        "tenant_id": row["project_id"],
        "flavor": flavor["name"],
        "started_at": timestamp(started),
        "ended_at": timestamp(ended),
        "state": "terminated" if row["deleted_at"] is not None else row["vm_state"],
        "uptime": int(((ended or now) - started).total_seconds()),
    }


async def _usages(
    req: ApiRequest[Any], project: str | None, start: datetime, end: datetime, detailed: bool
) -> list[dict[str, Any]]:
    now = service(req).clock.now()
    async with service(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, name, project_id, flavor::text AS flavor, vm_state, launched_at,
                      terminated_at, created_at, deleted_at
               FROM cmp_instances
               WHERE ($1::text IS NULL OR project_id = $1)
                 AND (terminated_at IS NULL OR terminated_at > $2) AND created_at < $3
               ORDER BY project_id, created_at, id""",
            project,
            start,
            end,
        )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        server = _server(row, start, end, now)
        usage = out.setdefault(
            row["project_id"],
            {
                "tenant_id": row["project_id"],
                "total_local_gb_usage": 0.0,
                "total_vcpus_usage": 0.0,
                "total_memory_mb_usage": 0.0,
                "total_hours": 0.0,
                "start": timestamp(start),
                "stop": timestamp(end),
                "server_usages": [],
            },
        )
        hours = server["hours"]
        usage["total_local_gb_usage"] += server["local_gb"] * hours
        usage["total_vcpus_usage"] += server["vcpus"] * hours
        usage["total_memory_mb_usage"] += server["memory_mb"] * hours
        usage["total_hours"] += hours
        usage["server_usages"].append(server)
    if not detailed:
        for usage in out.values():
            del usage["server_usages"]
    return list(out.values())


@router.get(
    "/os-simple-tenant-usage",
    query=("start", "end", "detailed", "limit", "marker"),
    errors=(400, 403),
)
async def list_usage(req: ApiRequest[Any]) -> dict[str, Any]:
    """Every project's usage over the period (admin)."""
    enforce(req, policies.USAGE_LIST)
    start, end, detailed = _period(req)
    return {"tenant_usages": await _usages(req, None, start, end, detailed)}


@router.get(
    "/os-simple-tenant-usage/{project_id}",
    query=("start", "end", "limit", "marker"),
    errors=(400, 403),
)
async def show_usage(req: ApiRequest[Any]) -> dict[str, Any]:
    """One project's usage over the period, with its servers."""
    project = req.params["project_id"]
    enforce(req, policies.USAGE_SHOW, {"project_id": project})
    start, end, _ = _period(req)
    usages = await _usages(req, project, start, end, True)
    return {"tenant_usage": usages[0] if usages else {}}
