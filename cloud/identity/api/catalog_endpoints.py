"""``/v3/endpoints``: where each service answers, per interface and region.

As in Keystone, an unknown ``service_id`` or ``region_id`` is a 400 (the reference is part of the
request body), and the legacy ``region`` attribute (v3.0/v3.1 clients) creates the region it names
if it does not exist yet. Every endpoint shows ``region`` next to ``region_id``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, get_args

import asyncpg
from pydantic import BaseModel, Field, StrictBool, StrictStr

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity.api import router
from cloud.identity.api.common import collection_links, enforce, identity, not_found, self_link
from cloud.identity.api.open_models import (
    OpenModel,
    dump_extra,
    fetch_one,
    load_extra,
    merged_extra,
    without_links,
)
from cloud.store.conn import DbConnection
from schemas.identity import EndpointCreated, EndpointDeleted, EndpointUpdated, RegionCreated

Interface = Literal["admin", "internal", "public"]
Url = Annotated[StrictStr, Field(max_length=225, pattern=r"^[a-zA-Z0-9+.-]+:.+")]
# Declared (so their types are checked) but kept with the extra attributes, as Keystone does.
_EXTRA_FIELDS = ("name", "description")


class EndpointCreateFields(OpenModel):
    interface: Interface
    service_id: StrictStr
    url: Url
    region_id: StrictStr | None = None
    region: StrictStr | None = None
    enabled: StrictBool = True
    name: StrictStr = ""
    description: StrictStr | None = None


class EndpointCreate(BaseModel):
    """``{"endpoint": {"service_id": ..., "interface": ..., "url": ..., "region_id": ...}}``."""

    endpoint: EndpointCreateFields


class EndpointUpdateFields(OpenModel):
    interface: Interface = "public"
    service_id: StrictStr = ""
    url: Url = ""
    region_id: StrictStr | None = None
    region: StrictStr | None = None
    enabled: StrictBool = True
    name: StrictStr = ""
    description: StrictStr | None = None


class EndpointUpdate(BaseModel):
    """``{"endpoint": {...}}`` with the attributes to change."""

    endpoint: EndpointUpdateFields


def endpoint_view(req: ApiRequest[Any], r: asyncpg.Record) -> dict[str, Any]:
    return {
        **load_extra(r["extra"]),
        "id": r["id"],
        "interface": r["interface"],
        "service_id": r["service_id"],
        "region_id": r["region_id"],
        "region": r["region_id"],
        "url": r["url"],
        "enabled": r["enabled"],
        "links": self_link(req, f"/endpoints/{r['id']}"),
    }


def _reference_error(attribute: str, table: str) -> ApiError:
    return ApiError(
        400,
        f"Expecting to find endpoint {attribute} in {table}. The server could not comply with"
        " the request since it is either malformed or otherwise incorrect. The client is assumed"
        " to be in error.",
    )


async def _resolve_region(
    conn: DbConnection, fields: EndpointCreateFields | EndpointUpdateFields
) -> tuple[bool, str | None, bool]:
    """(region given?, the region id, created?): ``region`` alone creates a missing region."""
    given = fields.model_fields_set
    if fields.region_id is None and fields.region is not None:
        if await region_exists(conn, fields.region):
            return True, fields.region, False
        await conn.execute("INSERT INTO id_regions (id) VALUES ($1)", fields.region)
        return True, fields.region, True
    if fields.region_id is not None and not await region_exists(conn, fields.region_id):
        raise _reference_error("region_id", "region table")
    return "region_id" in given or "region" in given, fields.region_id, False


async def region_exists(conn: DbConnection, region_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM id_regions WHERE id = $1", region_id))


async def _require_service(conn: DbConnection, service_id: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM id_services WHERE id = $1", service_id):
        raise _reference_error("service_id", "service table")


@router.get(
    "/endpoints",
    query=(
        QueryParam("interface", {"type": "string", "enum": list(get_args(Interface))}),
        QueryParam("service_id"),
        QueryParam("region_id"),
    ),
)
async def list_endpoints(req: ApiRequest[Any]) -> dict[str, Any]:
    """List endpoints."""
    enforce(req, "identity:list_endpoints")
    interface = req.query.get("interface")
    if interface is not None and interface not in get_args(Interface):
        raise ApiError(400, f"Invalid interface {interface!r}: use admin, internal or public.")
    where = (
        Where()
        .eq("interface", interface)
        .eq("service_id", req.query.get("service_id"))
        .eq("region_id", req.query.get("region_id"))
    )
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_endpoints {where.sql()} ORDER BY service_id, interface, id",
            *where.args,
        )
    return {"endpoints": [endpoint_view(req, r) for r in rows], "links": collection_links(req)}


@router.get("/endpoints/{endpoint_id}")
async def get_endpoint(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show an endpoint."""
    enforce(req, "identity:get_endpoint")
    endpoint_id = req.params["endpoint_id"]
    async with identity(req).store.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM id_endpoints WHERE id = $1", endpoint_id)
    if row is None:
        raise not_found("endpoint", endpoint_id)
    return {"endpoint": endpoint_view(req, row)}


@router.post("/endpoints", body=EndpointCreate, status=201)
async def create_endpoint(req: ApiRequest[EndpointCreate]) -> dict[str, Any]:
    """Create an endpoint of a service."""
    enforce(req, "identity:create_endpoint")
    e = req.body.endpoint
    endpoint_id = uuid.uuid4().hex
    async with identity(req).write() as uow:
        _, region_id, created = await _resolve_region(uow.conn, e)
        await _require_service(uow.conn, e.service_id)
        if created and region_id is not None:
            await uow.emit(RegionCreated(resource_id=region_id))
        row = await fetch_one(
            uow.conn,
            """INSERT INTO id_endpoints (id, service_id, region_id, interface, url, enabled, extra)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING *""",
            endpoint_id,
            e.service_id,
            region_id,
            e.interface,
            e.url,
            e.enabled,
            dump_extra(e.extras(*_EXTRA_FIELDS)),
        )
        view = endpoint_view(req, row)
        await uow.emit(EndpointCreated(resource_id=endpoint_id, attributes=without_links(view)))
    return {"endpoint": view}


@router.patch("/endpoints/{endpoint_id}", body=EndpointUpdate)
async def update_endpoint(req: ApiRequest[EndpointUpdate]) -> dict[str, Any]:
    """Update an endpoint."""
    enforce(req, "identity:update_endpoint")
    endpoint_id, e = req.params["endpoint_id"], req.body.endpoint
    e.require_some("endpoint")
    e.require_id(endpoint_id)
    given = e.model_fields_set
    async with identity(req).write() as uow:
        row = await uow.conn.fetchrow(
            "SELECT * FROM id_endpoints WHERE id = $1 FOR UPDATE", endpoint_id
        )
        if row is None:
            raise not_found("endpoint", endpoint_id)
        region_given, region_id, created = await _resolve_region(uow.conn, e)
        if created and region_id is not None:
            await uow.emit(RegionCreated(resource_id=region_id))
        if "service_id" in given:
            await _require_service(uow.conn, e.service_id)
        row = await fetch_one(
            uow.conn,
            """UPDATE id_endpoints SET service_id = $2, region_id = $3, interface = $4, url = $5,
                   enabled = $6, extra = $7::jsonb WHERE id = $1 RETURNING *""",
            endpoint_id,
            e.service_id if "service_id" in given else row["service_id"],
            region_id if region_given else row["region_id"],
            e.interface if "interface" in given else row["interface"],
            e.url if "url" in given else row["url"],
            e.enabled if "enabled" in given else row["enabled"],
            merged_extra(row, e.extras(*_EXTRA_FIELDS)),
        )
        view = endpoint_view(req, row)
        await uow.emit(EndpointUpdated(resource_id=endpoint_id, attributes=without_links(view)))
    return {"endpoint": view}


@router.delete("/endpoints/{endpoint_id}", status=204)
async def delete_endpoint(req: ApiRequest[Any]) -> None:
    """Delete an endpoint."""
    enforce(req, "identity:delete_endpoint")
    endpoint_id = req.params["endpoint_id"]
    async with identity(req).write() as uow:
        if not await uow.conn.fetchval(
            "DELETE FROM id_endpoints WHERE id = $1 RETURNING id", endpoint_id
        ):
            raise not_found("endpoint", endpoint_id)
        await uow.emit(EndpointDeleted(resource_id=endpoint_id))
