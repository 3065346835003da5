"""``/os-aggregates``: host aggregates (admin), and the availability zones they define.

An aggregate's ``availability_zone`` is its metadata key of that name; a host in such an aggregate
is in that zone (SQL ``cmp_host_zone``), every other host in the zone its agent reports (``nova``).
As in Nova a host cannot be in two different zones: adding it to, or zoning, an aggregate that would
put one of its hosts in a second zone is refused (409 on add_host, 400 on metadata/update). Ids are
integers; 2.41 adds the ``uuid``. Every change is an event on ``aggregate:<id>``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavors import enforce, service
from cloud.compute.api.microversion import version
from cloud.compute.api.os_services import INTERNAL_ZONE, timestamp
from cloud.store.conn import DbConnection
from cloud.store.writes import UnitOfWork
from schemas.compute_placement import AggregateCreated, AggregateDeleted, AggregateUpdated

ZONE_KEY = "availability_zone"
COLUMNS = "id, uuid, name, metadata::text AS metadata, created_at, updated_at"


class AggregateBody(BaseModel):
    """``{"aggregate": {...}}`` (create, update): checked field by field, as Nova's schema."""

    model_config = ConfigDict(extra="forbid")
    aggregate: Any


class ActionBody(BaseModel):
    """Exactly one of ``add_host``, ``remove_host``, ``set_metadata``."""

    model_config = ConfigDict(extra="forbid")
    add_host: Any = None
    remove_host: Any = None
    set_metadata: Any = None


def _invalid(field: str, value: Any) -> ApiError:
    return ApiError(400, f"Invalid input for field/attribute {field}. Value: {value}.")


def _name(value: Any, field: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 255 or len(value) > 255:
        raise _invalid(field, value)
    return value.strip() if field == "name" else value


def _fields(body: Any, *, create: bool) -> dict[str, Any]:
    if not isinstance(body, dict) or not body or set(body) - {"name", ZONE_KEY}:
        raise _invalid("aggregate", body)
    if create and "name" not in body:
        raise ApiError(
            400, "Invalid input for field/attribute aggregate. 'name' is a required property"
        )
    out: dict[str, Any] = {}
    if "name" in body:
        out["name"] = _name(body["name"], "name")
    if ZONE_KEY in body:
        out[ZONE_KEY] = _name(body[ZONE_KEY], ZONE_KEY, nullable=True)
        if out[ZONE_KEY] == INTERNAL_ZONE:
            raise ApiError(400, "Aggregates cannot be put in the internal availability zone.")
    return out


def _aggregate_id(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid input for field/attribute id. Value: {raw}.") from None


async def _load(conn: DbConnection, aggregate_id: int, *, lock: bool = False) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM cmp_aggregates WHERE id = $1{' FOR UPDATE' if lock else ''}",
        aggregate_id,
    )
    if row is None:
        raise ApiError(404, f"Aggregate {aggregate_id} could not be found.")
    agg = dict(row)
    agg["metadata"] = json.loads(agg["metadata"])
    agg["hosts"] = [
        r["host"]
        for r in await conn.fetch(
            "SELECT host FROM cmp_aggregate_hosts WHERE aggregate_id = $1 ORDER BY host",
            aggregate_id,
        )
    ]
    return agg


def view(req: ApiRequest[Any], agg: dict[str, Any], *, brief: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "availability_zone": agg["metadata"].get(ZONE_KEY),
        "created_at": timestamp(agg["created_at"]),
        "deleted": False,
        "deleted_at": None,
        "id": agg["id"],
        "name": agg["name"],
        "updated_at": timestamp(agg["updated_at"]),
    }
    if not brief:
        out["hosts"] = agg["hosts"]
        out["metadata"] = agg["metadata"]
    if version(req) >= (2, 41):
        out["uuid"] = agg["uuid"]
    return out


async def _check_zone(
    conn: DbConnection, aggregate_id: int, hosts: list[str], zone: str | None
) -> None:
    """Raise a ValueError naming the other zones if ``zone`` would put a host in a second zone."""
    if zone is None or not hosts:
        return
    others = await conn.fetch(
        """SELECT DISTINCT a.metadata ->> 'availability_zone' AS zone
           FROM cmp_aggregate_hosts ah JOIN cmp_aggregates a ON a.id = ah.aggregate_id
           WHERE ah.host = ANY($1::text[]) AND a.id <> $2 AND a.metadata ? 'availability_zone'
             AND a.metadata ->> 'availability_zone' <> $3""",
        hosts,
        aggregate_id,
        zone,
    )
    if others:
        names = sorted(r["zone"] for r in others)
        raise ValueError(f"One or more hosts already in availability zone(s) {names}")


async def _updated(uow: UnitOfWork, aggregate_id: int, change: str) -> dict[str, Any]:
    await uow.conn.execute(
        "UPDATE cmp_aggregates SET updated_at = now() WHERE id = $1", aggregate_id
    )
    agg = await _load(uow.conn, aggregate_id)
    await uow.emit(
        AggregateUpdated(
            aggregate_id=aggregate_id,
            change=change,
            name=agg["name"],
            metadata={k: str(v) for k, v in agg["metadata"].items()},
            hosts=agg["hosts"],
        )
    )
    return agg


async def _lock_all(uow: UnitOfWork) -> None:
    # Zone checks read other aggregates: changes to aggregates are serialised.
    await uow.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('cmp-aggregates', 0))")


@router.get("/os-aggregates", errors=(403,))
async def list_aggregates(req: ApiRequest[Any]) -> dict[str, Any]:
    """Every host aggregate (admin)."""
    enforce(req, policies.AGGREGATES_INDEX)
    async with service(req).store.pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM cmp_aggregates ORDER BY id")]
        return {"aggregates": [view(req, await _load(conn, i)) for i in ids]}


@router.post("/os-aggregates", body=AggregateBody, errors=(400, 403, 409))
async def create_aggregate(req: ApiRequest[AggregateBody]) -> dict[str, Any]:
    """Create an aggregate, optionally defining an availability zone (admin)."""
    enforce(req, policies.AGGREGATES_CREATE)
    fields = _fields(req.body.aggregate, create=True)
    zone = fields.get(ZONE_KEY)
    metadata = {ZONE_KEY: zone} if zone else {}
    async with service(req).write() as uow:
        await _lock_all(uow)
        if await uow.conn.fetchval(
            "SELECT 1 FROM cmp_aggregates WHERE lower(name) = lower($1)", fields["name"]
        ):
            raise ApiError(409, f"Aggregate {fields['name']} already exists.")
        new_id = await uow.conn.fetchval(
            "INSERT INTO cmp_aggregates (uuid, name, metadata) VALUES ($1, $2, $3::jsonb) RETURNING id",
            str(uuid.uuid4()),
            fields["name"],
            json.dumps(metadata),
        )
        agg = await _load(uow.conn, new_id)
        await uow.emit(
            AggregateCreated(
                aggregate_id=new_id, uuid=agg["uuid"], name=agg["name"], availability_zone=zone
            )
        )
    return {"aggregate": view(req, agg, brief=True)}


@router.get("/os-aggregates/{aggregate_id}", errors=(400, 403, 404))
async def show_aggregate(req: ApiRequest[Any]) -> dict[str, Any]:
    """One aggregate with its hosts and metadata (admin)."""
    enforce(req, policies.AGGREGATES_SHOW)
    aggregate_id = _aggregate_id(req.params["aggregate_id"])
    async with service(req).store.pool.acquire() as conn:
        return {"aggregate": view(req, await _load(conn, aggregate_id))}


@router.put("/os-aggregates/{aggregate_id}", body=AggregateBody, errors=(400, 403, 404, 409))
async def update_aggregate(req: ApiRequest[AggregateBody]) -> dict[str, Any]:
    """Rename an aggregate or change its zone (admin)."""
    enforce(req, policies.AGGREGATES_UPDATE)
    aggregate_id = _aggregate_id(req.params["aggregate_id"])
    fields = _fields(req.body.aggregate, create=False)
    async with service(req).write() as uow:
        await _lock_all(uow)
        agg = await _load(uow.conn, aggregate_id, lock=True)
        if "name" in fields:
            if await uow.conn.fetchval(
                "SELECT 1 FROM cmp_aggregates WHERE lower(name) = lower($1) AND id <> $2",
                fields["name"],
                aggregate_id,
            ):
                raise ApiError(409, f"Aggregate {fields['name']} already exists.")
            await uow.conn.execute(
                "UPDATE cmp_aggregates SET name = $2 WHERE id = $1", aggregate_id, fields["name"]
            )
        if ZONE_KEY in fields:
            await _set_metadata(uow, agg, {ZONE_KEY: fields[ZONE_KEY]})
        agg = await _updated(uow, aggregate_id, "update")
    return {"aggregate": view(req, agg)}


@router.delete("/os-aggregates/{aggregate_id}", status=200, errors=(400, 403, 404))
async def delete_aggregate(req: ApiRequest[Any]) -> None:
    """Delete an aggregate that holds no host (admin)."""
    enforce(req, policies.AGGREGATES_DELETE)
    aggregate_id = _aggregate_id(req.params["aggregate_id"])
    async with service(req).write() as uow:
        agg = await _load(uow.conn, aggregate_id, lock=True)
        if agg["hosts"]:
            raise ApiError(
                400,
                f"Cannot delete aggregate {aggregate_id}. Reason: Host aggregate is not empty.",
            )
        await uow.conn.execute("DELETE FROM cmp_aggregates WHERE id = $1", aggregate_id)
        await uow.emit(AggregateDeleted(aggregate_id=aggregate_id))


async def _set_metadata(uow: UnitOfWork, agg: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply ``changes`` (None deletes a key); 400 if the zone would conflict."""
    metadata = dict(agg["metadata"])
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    try:
        await _check_zone(uow.conn, agg["id"], agg["hosts"], metadata.get(ZONE_KEY))
    except ValueError as exc:
        raise ApiError(
            400, f"Cannot update metadata of aggregate {agg['id']}. Reason: {exc}."
        ) from None
    await uow.conn.execute(
        "UPDATE cmp_aggregates SET metadata = $2::jsonb WHERE id = $1",
        agg["id"],
        json.dumps(metadata),
    )


def _host_arg(value: Any) -> str:
    if not isinstance(value, dict) or set(value) != {"host"} or not isinstance(value["host"], str):
        raise _invalid("host", value)
    host: str = value["host"]
    if not 1 <= len(host) <= 255:
        raise _invalid("host", host)
    return host


def _metadata_arg(value: Any) -> dict[str, Any]:
    if (
        not isinstance(value, dict)
        or set(value) != {"metadata"}
        or not isinstance(value["metadata"], dict)
    ):
        raise _invalid("set_metadata", value)
    metadata: dict[str, Any] = value["metadata"]
    for key, item in metadata.items():
        if not 1 <= len(key) <= 255 or not (
            item is None or (isinstance(item, str) and len(item) <= 255)
        ):
            raise _invalid("metadata", {key: item})
    if metadata.get(ZONE_KEY) == INTERNAL_ZONE or metadata.get(ZONE_KEY) == "":
        raise _invalid(ZONE_KEY, metadata.get(ZONE_KEY))
    return metadata


@router.post("/os-aggregates/{aggregate_id}/action", body=ActionBody, errors=(400, 403, 404, 409))
async def aggregate_action(req: ApiRequest[ActionBody]) -> dict[str, Any]:
    """``add_host``, ``remove_host`` or ``set_metadata`` (admin)."""
    given = req.body.model_fields_set
    if len(given) != 1:
        raise ApiError(
            400, "Invalid input: give exactly one of add_host, remove_host, set_metadata."
        )
    action = next(iter(given))
    rule = {
        "add_host": policies.AGGREGATES_ADD_HOST,
        "remove_host": policies.AGGREGATES_REMOVE_HOST,
        "set_metadata": policies.AGGREGATES_SET_METADATA,
    }[action]
    enforce(req, rule)
    aggregate_id = _aggregate_id(req.params["aggregate_id"])
    arg = getattr(req.body, action)
    async with service(req).write() as uow:
        await _lock_all(uow)
        agg = await _load(uow.conn, aggregate_id, lock=True)
        if action == "set_metadata":
            await _set_metadata(uow, agg, _metadata_arg(arg))
        elif action == "add_host":
            await _add_host(uow, agg, _host_arg(arg))
        else:
            host = _host_arg(arg)
            if host not in agg["hosts"]:
                raise ApiError(404, f"Aggregate {aggregate_id} has no host {host}.")
            await uow.conn.execute(
                "DELETE FROM cmp_aggregate_hosts WHERE aggregate_id = $1 AND host = $2",
                aggregate_id,
                host,
            )
        agg = await _updated(uow, aggregate_id, action)
    return {"aggregate": view(req, agg)}


async def _add_host(uow: UnitOfWork, agg: dict[str, Any], host: str) -> None:
    if not await uow.conn.fetchval("SELECT 1 FROM cmp_hosts WHERE host = $1", host):
        raise ApiError(404, f"Compute host {host} could not be found.")
    if host in agg["hosts"]:
        raise ApiError(409, f"Aggregate {agg['id']} already has host {host}.")
    try:
        await _check_zone(uow.conn, agg["id"], [host], agg["metadata"].get(ZONE_KEY))
    except ValueError as exc:
        raise ApiError(409, f"Cannot add host to aggregate {agg['id']}. Reason: {exc}.") from None
    await uow.conn.execute(
        "INSERT INTO cmp_aggregate_hosts (aggregate_id, host) VALUES ($1, $2)", agg["id"], host
    )
