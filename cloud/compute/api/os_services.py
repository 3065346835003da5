"""``/os-services``: Nova's service list over the actors that exist (admin only).

Entries: one ``nova-compute`` per compute host (``cmp_hosts``: up while its resource reports are
fresher than :data:`DOWN_AFTER`, enabled unless an admin disabled it) and ``nova-scheduler`` /
``nova-conductor`` for every node whose scheduler or conductor actor heartbeats to the service
registry (``services``). Ids are stable: a uuid from 2.53 (derived from host and binary), an integer
before. From 2.53 ``PUT /os-services/{id}`` disables (with a reason), enables and forces down a
compute service; the scheduler's ComputeFilter and its claim skip disabled hosts.
``DELETE /os-services/{id}`` removes a compute host that hosts no instance (its agent registers it
again with its next report, as a restarted nova-compute does).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavors import enforce, service
from cloud.compute.api.microversion import version

# The admin rule (still imported by modules that check no Nova rule of their own).
ADMIN_RULE = "admin_api"
DOWN_AFTER = timedelta(seconds=15)
COMPUTE_BINARY = "nova-compute"
# Registry binaries (``aiostack-<actor>``) shown under Nova's names.
ACTOR_BINARIES = {"aiostack-scheduler": "nova-scheduler", "aiostack-conductor": "nova-conductor"}
INTERNAL_ZONE = "internal"
_NAMESPACE = uuid.UUID("6f1c3a52-4b1e-5d8a-9c51-7a0e2b8f3d10")
MAX_REASON = 255

Service = dict[str, Any]


def service_uuid(host: str, binary: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{host}/{binary}"))


def service_int_id(host: str, binary: str) -> int:
    """The pre-2.53 integer id: stable across requests (derived from the uuid)."""
    return int(service_uuid(host, binary).replace("-", "")[:7], 16) + 1


def is_up(last: datetime | None, now: datetime) -> bool:
    return last is not None and now - last <= DOWN_AFTER


def public_id(req: ApiRequest[Any], host: str, binary: str) -> str | int:
    if version(req) >= (2, 53):
        return service_uuid(host, binary)
    return service_int_id(host, binary)


async def all_services(req: ApiRequest[Any]) -> list[Service]:
    """Every service, compute hosts first, as plain dicts (``view`` renders them)."""
    svc = service(req)
    now = svc.clock.now()
    async with svc.store.pool.acquire() as conn:
        hosts = await conn.fetch(
            """SELECT host, enabled, disabled_reason, forced_down, last_report_at,
                      cmp_host_zone(host) AS availability_zone FROM cmp_hosts ORDER BY host"""
        )
        actors = await conn.fetch(
            """SELECT host, binary_name, last_seen_at, state, started_at FROM services
               WHERE binary_name = ANY($1::text[]) ORDER BY binary_name, host""",
            list(ACTOR_BINARIES),
        )
    out: list[Service] = []
    for row in hosts:
        out.append(
            {
                "binary": COMPUTE_BINARY,
                "host": row["host"],
                "zone": row["availability_zone"],
                "enabled": row["enabled"],
                "disabled_reason": row["disabled_reason"],
                "forced_down": row["forced_down"],
                "up": not row["forced_down"] and is_up(row["last_report_at"], now),
                "updated_at": row["last_report_at"],
            }
        )
    for row in actors:
        out.append(
            {
                "binary": ACTOR_BINARIES[row["binary_name"]],
                "host": row["host"],
                "zone": INTERNAL_ZONE,
                "enabled": True,
                "disabled_reason": None,
                "forced_down": False,
                "up": row["state"] == "up" and is_up(row["last_seen_at"], now),
                "updated_at": row["last_seen_at"],
            }
        )
    return out


def timestamp(value: datetime | None) -> str | None:
    return value.replace(tzinfo=None).isoformat() if value is not None else None


def view(req: ApiRequest[Any], svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": public_id(req, svc["host"], svc["binary"]),
        "binary": svc["binary"],
        "host": svc["host"],
        "zone": svc["zone"],
        "status": "enabled" if svc["enabled"] else "disabled",
        "state": "up" if svc["up"] else "down",
        "updated_at": timestamp(svc["updated_at"]),
        "disabled_reason": svc["disabled_reason"],
    }
    if version(req) >= (2, 11):
        out["forced_down"] = svc["forced_down"]
    return out


async def find_service(req: ApiRequest[Any], service_id: str) -> Service:
    """The service named by a URL id (uuid from 2.53, integer before); 404 otherwise."""
    for svc in await all_services(req):
        if str(public_id(req, svc["host"], svc["binary"])) == service_id:
            return svc
    raise ApiError(404, f"Service {service_id} could not be found.")


@router.get("/os-services", query=("binary", "host"), errors=(403,))
async def list_services(req: ApiRequest[Any]) -> dict[str, Any]:
    """The compute, scheduler and conductor services (admin)."""
    enforce(req, policies.SERVICES_LIST)
    binary, host = req.query.get("binary"), req.query.get("host")
    return {
        "services": [
            view(req, s)
            for s in await all_services(req)
            if (binary is None or s["binary"] == binary) and (host is None or s["host"] == host)
        ]
    }


class ServiceUpdate(BaseModel):
    """``PUT /os-services/{id}`` (2.53): any of status, disabled_reason, forced_down."""

    model_config = ConfigDict(extra="forbid")
    status: Any = None
    disabled_reason: Any = None
    forced_down: Any = None


def _check_update(body: ServiceUpdate) -> tuple[bool | None, str | None, bool | None]:
    fields = body.model_fields_set
    if not fields:
        raise ApiError(400, "Invalid input for field/attribute service. Value: {}.")
    status = body.status
    if "status" in fields and status not in ("enabled", "disabled"):
        raise ApiError(
            400,
            f"Invalid input for field/attribute status. Value: {status}. "
            "'status' must be one of ['enabled', 'disabled']",
        )
    reason = body.disabled_reason
    if "disabled_reason" in fields:
        if status != "disabled":
            raise ApiError(
                400, "Specifying 'disabled_reason' with status other than 'disabled' is invalid."
            )
        if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= MAX_REASON:
            raise ApiError(
                400, f"Invalid input for field/attribute disabled_reason. Value: {reason}."
            )
    forced = body.forced_down
    if "forced_down" in fields and not isinstance(forced, bool):
        raise ApiError(400, f"Invalid input for field/attribute forced_down. Value: {forced}.")
    enabled = status == "enabled" if "status" in fields else None
    return (
        enabled,
        reason.strip() if isinstance(reason, str) else None,
        forced if "forced_down" in fields else None,
    )


@router.put("/os-services/{service_id}", body=ServiceUpdate, errors=(400, 403, 404))
async def update_service(req: ApiRequest[ServiceUpdate]) -> dict[str, Any]:
    """Disable (with a reason), enable or force down a compute service (2.53; admin)."""
    if version(req) < (2, 53):
        raise ApiError(404, "The resource could not be found.")
    enforce(req, policies.SERVICES_UPDATE)
    enabled, reason, forced = _check_update(req.body)
    svc = await find_service(req, req.params["service_id"])
    if svc["binary"] != COMPUTE_BINARY:
        raise ApiError(
            400,
            f"Updating a {svc['binary']} service is not supported. Only nova-compute "
            "services can be updated.",
        )
    async with service(req).write() as uow:
        row = await uow.conn.fetchrow(
            """UPDATE cmp_hosts SET
                   enabled = coalesce($2, enabled),
                   disabled_reason = CASE WHEN $2 IS NULL THEN disabled_reason
                                          WHEN $2 THEN NULL ELSE $3 END,
                   forced_down = coalesce($4, forced_down)
               WHERE host = $1 RETURNING host""",
            svc["host"],
            enabled,
            reason,
            forced,
        )
    if row is None:
        raise ApiError(404, f"Service {req.params['service_id']} could not be found.")
    return {"service": view(req, await find_service(req, req.params["service_id"]))}


@router.delete("/os-services/{service_id}", status=204, errors=(400, 403, 404, 409))
async def delete_service(req: ApiRequest[Any]) -> None:
    """Remove a compute service that hosts no instance (admin)."""
    enforce(req, policies.SERVICES_DELETE)
    if version(req) >= (2, 53):
        try:
            uuid.UUID(req.params["service_id"])
        except ValueError:
            raise ApiError(400, "Invalid uuid " + req.params["service_id"]) from None
    svc = await find_service(req, req.params["service_id"])
    if svc["binary"] != COMPUTE_BINARY:
        raise ApiError(
            400,
            f"Deleting a {svc['binary']} service is not supported: it is a running actor "
            "that registers itself again with its next heartbeat.",
        )
    async with service(req).write() as uow:
        host = await uow.conn.fetchval(
            "SELECT host FROM cmp_hosts WHERE host = $1 FOR UPDATE", svc["host"]
        )
        if host is None:
            raise ApiError(404, f"Service {req.params['service_id']} could not be found.")
        busy = await uow.conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM cmp_instances WHERE host = $1 AND deleted_at IS NULL)
                   OR EXISTS (SELECT 1 FROM cmp_claims WHERE host = $1)""",
            host,
        )
        if busy:
            raise ApiError(409, "Unable to delete compute service that is hosting instances.")
        await uow.conn.execute("DELETE FROM cmp_hosts WHERE host = $1", host)
