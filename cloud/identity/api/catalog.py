"""``/v3/regions`` and ``/v3/services`` (with :mod:`catalog_endpoints`, ``/v3/endpoints``).

As in Keystone, regions, services and endpoints keep attributes they do not define (``extra``):
what a client sends beside the known fields comes back on every read. A region's id may be chosen
by the client (``POST`` with ``region.id``, or ``PUT /regions/{id}``); deleting a region deletes its
child regions too, unless one of them still has endpoints (403). Deleting a service deletes its
endpoints.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

import asyncpg
from pydantic import BaseModel, Field, StrictBool, StrictStr

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity.api import router

# Importing it registers /endpoints too (the package imports only this module).
from cloud.identity.api.catalog_endpoints import region_exists
from cloud.identity.api.common import (
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    not_found,
    self_link,
)
from cloud.identity.api.open_models import (
    OpenModel,
    dump_extra,
    fetch_one,
    load_extra,
    merged_extra,
    without_links,
)
from cloud.store.conn import DbConnection
from schemas.identity import (
    EndpointDeleted,
    RegionCreated,
    RegionDeleted,
    RegionUpdated,
    ServiceCreated,
    ServiceDeleted,
    ServiceUpdated,
)

Description = Annotated[StrictStr, Field(max_length=255)]
RegionRef = Annotated[StrictStr, Field(min_length=1, max_length=255)]
ServiceStr = Annotated[StrictStr, Field(min_length=1, max_length=255)]


# -- regions --------------------------------------------------------------------------------------


class RegionFields(OpenModel):
    id: Annotated[StrictStr, Field(max_length=255)] | None = None
    description: Description | None = None
    parent_region_id: RegionRef | None = None


class RegionBody(BaseModel):
    """``{"region": {...}}``."""

    region: RegionFields


def region_view(req: ApiRequest[Any], r: asyncpg.Record) -> dict[str, Any]:
    return {
        **load_extra(r["extra"]),
        "id": r["id"],
        "description": r["description"],
        "parent_region_id": r["parent_region_id"],
        "links": self_link(req, f"/regions/{quote(r['id'], safe='')}"),
    }


@router.get("/regions", query=(QueryParam("parent_region_id"),))
async def list_regions(req: ApiRequest[Any]) -> dict[str, Any]:
    """List regions."""
    enforce(req, "identity:list_regions")
    where = Where().eq("parent_region_id", req.query.get("parent_region_id"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT * FROM id_regions {where.sql()} ORDER BY id", *where.args)
    return {"regions": [region_view(req, r) for r in rows], "links": collection_links(req)}


@router.get("/regions/{region_id}")
async def get_region(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a region."""
    enforce(req, "identity:get_region")
    region_id = req.params["region_id"]
    async with identity(req).store.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM id_regions WHERE id = $1", region_id)
    if row is None:
        raise not_found("region", region_id)
    return {"region": region_view(req, row)}


async def _create_region(
    req: ApiRequest[Any], fields: RegionFields, region_id: str
) -> dict[str, Any]:
    enforce(req, "identity:create_region")
    parent = fields.parent_region_id
    async with conflict_on_duplicate("region", f"id {region_id}"), identity(req).write() as uow:
        if await region_exists(uow.conn, region_id):
            raise ApiError(
                409, f"Conflict occurred attempting to store region - Duplicate ID, {region_id}."
            )
        if parent is not None and not await region_exists(uow.conn, parent):
            raise not_found("region", parent)
        row = await fetch_one(
            uow.conn,
            """INSERT INTO id_regions (id, description, parent_region_id, extra)
               VALUES ($1, $2, $3, $4::jsonb) RETURNING *""",
            region_id,
            fields.description or "",
            parent,
            dump_extra(fields.extras()),
        )
        view = region_view(req, row)
        await uow.emit(RegionCreated(resource_id=region_id, attributes=without_links(view)))
    return {"region": view}


@router.post("/regions", body=RegionBody, status=201, errors=(409,))
async def create_region(req: ApiRequest[RegionBody]) -> dict[str, Any]:
    """Create a region (with the id in the body, or a generated one)."""
    fields = req.body.region
    return await _create_region(req, fields, fields.id or uuid.uuid4().hex)


@router.put("/regions/{region_id}", body=RegionBody, status=201, errors=(409,))
async def put_region(req: ApiRequest[RegionBody]) -> dict[str, Any]:
    """Create a region with the id in the path."""
    region_id, fields = req.params["region_id"], req.body.region
    if fields.id is not None and fields.id != region_id:
        raise ApiError(400, f'Conflicting region IDs specified: "{region_id}" != "{fields.id}"')
    return await _create_region(req, fields, region_id)


@router.patch("/regions/{region_id}", body=RegionBody)
async def update_region(req: ApiRequest[RegionBody]) -> dict[str, Any]:
    """Update a region's description, parent or extra attributes."""
    enforce(req, "identity:update_region")
    region_id, fields = req.params["region_id"], req.body.region
    fields.require_some("region")
    fields.require_id(region_id)
    given = fields.model_fields_set
    async with identity(req).write() as uow:
        row = await uow.conn.fetchrow(
            "SELECT * FROM id_regions WHERE id = $1 FOR UPDATE", region_id
        )
        if row is None:
            raise not_found("region", region_id)
        parent = fields.parent_region_id if "parent_region_id" in given else row["parent_region_id"]
        if parent is not None and parent != row["parent_region_id"]:
            await _check_parent(uow.conn, region_id, parent)
        description = (fields.description or "") if "description" in given else row["description"]
        row = await fetch_one(
            uow.conn,
            """UPDATE id_regions SET description = $2, parent_region_id = $3, extra = $4::jsonb
               WHERE id = $1 RETURNING *""",
            region_id,
            description,
            parent,
            merged_extra(row, fields.extras()),
        )
        view = region_view(req, row)
        await uow.emit(RegionUpdated(resource_id=region_id, attributes=without_links(view)))
    return {"region": view}


async def _check_parent(conn: DbConnection, region_id: str, parent: str) -> None:
    """404 if ``parent`` does not exist, 400 if it is ``region_id`` or one of its descendants."""
    if not await region_exists(conn, parent):
        raise not_found("region", parent)
    circular = await conn.fetchval(
        """WITH RECURSIVE up AS (
               SELECT id, parent_region_id FROM id_regions WHERE id = $1
               UNION
               SELECT r.id, r.parent_region_id FROM id_regions r JOIN up ON r.id = up.parent_region_id
           ) SELECT EXISTS (SELECT 1 FROM up WHERE id = $2)""",
        parent,
        region_id,
    )
    if circular:
        raise ApiError(
            400,
            f"The specified parent region {parent} would create a circular region hierarchy.",
        )


@router.delete("/regions/{region_id}", status=204)
async def delete_region(req: ApiRequest[Any]) -> None:
    """Delete a region and its child regions (403 while any of them has endpoints)."""
    enforce(req, "identity:delete_region")
    region_id = req.params["region_id"]
    async with identity(req).write() as uow:
        tree: list[str] = [
            r["id"]
            for r in await uow.conn.fetch(
                """WITH RECURSIVE tree AS (
                       SELECT id FROM id_regions WHERE id = $1
                       UNION
                       SELECT r.id FROM id_regions r JOIN tree t ON r.parent_region_id = t.id
                   ) SELECT id FROM tree""",
                region_id,
            )
        ]
        if not tree:
            raise not_found("region", region_id)
        if await uow.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM id_endpoints WHERE region_id = ANY($1::text[]))", tree
        ):
            raise ApiError(
                403,
                f"Unable to delete region {region_id} because it or its child regions have"
                " associated endpoints.",
            )
        await uow.conn.execute("DELETE FROM id_regions WHERE id = ANY($1::text[])", tree)
        for deleted in tree:
            await uow.emit(RegionDeleted(resource_id=deleted))


# -- services -------------------------------------------------------------------------------------


class ServiceCreateFields(OpenModel):
    type: ServiceStr
    name: ServiceStr = ""
    enabled: StrictBool = True
    description: StrictStr | None = None


class ServiceCreate(BaseModel):
    """``{"service": {"type": ..., "name": ..., ...}}``."""

    service: ServiceCreateFields


class ServiceUpdateFields(OpenModel):
    type: ServiceStr = ""
    name: ServiceStr = ""
    enabled: StrictBool = True
    description: StrictStr | None = None


class ServiceUpdate(BaseModel):
    """``{"service": {...}}`` with the attributes to change."""

    service: ServiceUpdateFields


def service_view(req: ApiRequest[Any], r: asyncpg.Record) -> dict[str, Any]:
    view = {
        **load_extra(r["extra"]),
        "id": r["id"],
        "type": r["type"],
        "name": r["name"] or "",
        "enabled": r["enabled"],
        "links": self_link(req, f"/services/{r['id']}"),
    }
    if r["description"] is not None:
        view["description"] = r["description"]
    return view


@router.get("/services", query=(QueryParam("type"), QueryParam("name")))
async def list_services(req: ApiRequest[Any]) -> dict[str, Any]:
    """List services."""
    enforce(req, "identity:list_services")
    where = Where().eq("type", req.query.get("type")).eq("name", req.query.get("name"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_services {where.sql()} ORDER BY type, id", *where.args
        )
    return {"services": [service_view(req, r) for r in rows], "links": collection_links(req)}


@router.get("/services/{service_id}")
async def get_service(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a service."""
    enforce(req, "identity:get_service")
    service_id = req.params["service_id"]
    async with identity(req).store.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM id_services WHERE id = $1", service_id)
    if row is None:
        raise not_found("service", service_id)
    return {"service": service_view(req, row)}


@router.post("/services", body=ServiceCreate, status=201)
async def create_service(req: ApiRequest[ServiceCreate]) -> dict[str, Any]:
    """Create a service."""
    enforce(req, "identity:create_service")
    s = req.body.service
    service_id = uuid.uuid4().hex
    async with identity(req).write() as uow:
        row = await fetch_one(
            uow.conn,
            """INSERT INTO id_services (id, type, name, description, enabled, extra)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING *""",
            service_id,
            s.type,
            s.name or "",
            s.description,
            s.enabled,
            dump_extra(s.extras()),
        )
        view = service_view(req, row)
        await uow.emit(ServiceCreated(resource_id=service_id, attributes=without_links(view)))
    return {"service": view}


@router.patch("/services/{service_id}", body=ServiceUpdate)
async def update_service(req: ApiRequest[ServiceUpdate]) -> dict[str, Any]:
    """Update a service."""
    enforce(req, "identity:update_service")
    service_id, s = req.params["service_id"], req.body.service
    s.require_some("service")
    s.require_id(service_id)
    given = s.model_fields_set
    async with identity(req).write() as uow:
        row = await uow.conn.fetchrow(
            "SELECT * FROM id_services WHERE id = $1 FOR UPDATE", service_id
        )
        if row is None:
            raise not_found("service", service_id)
        row = await fetch_one(
            uow.conn,
            """UPDATE id_services SET type = $2, name = $3, description = $4, enabled = $5,
                   extra = $6::jsonb WHERE id = $1 RETURNING *""",
            service_id,
            s.type if "type" in given else row["type"],
            s.name if "name" in given else row["name"],
            s.description if "description" in given else row["description"],
            s.enabled if "enabled" in given else row["enabled"],
            merged_extra(row, s.extras()),
        )
        view = service_view(req, row)
        await uow.emit(ServiceUpdated(resource_id=service_id, attributes=without_links(view)))
    return {"service": view}


@router.delete("/services/{service_id}", status=204)
async def delete_service(req: ApiRequest[Any]) -> None:
    """Delete a service and its endpoints."""
    enforce(req, "identity:delete_service")
    service_id = req.params["service_id"]
    async with identity(req).write() as uow:
        endpoints = await uow.conn.fetch(
            "DELETE FROM id_endpoints WHERE service_id = $1 RETURNING id", service_id
        )
        if not await uow.conn.fetchval(
            "DELETE FROM id_services WHERE id = $1 RETURNING id", service_id
        ):
            raise not_found("service", service_id)
        for e in endpoints:
            await uow.emit(EndpointDeleted(resource_id=e["id"]))
        await uow.emit(ServiceDeleted(resource_id=service_id))
