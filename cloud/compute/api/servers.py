"""``/servers``: boot, list, show and delete servers (Nova v2.1).

A boot writes the instance row and ``compute.instance.requested`` in one transaction and answers
202; the scheduler, conductor and compute agent finish it (see :mod:`cloud.conductor.actor`).
``Idempotency-Key`` makes a retried boot return the server the first request created.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import ApiError
from cloud.api.listing import next_url, parse_limit
from cloud.api.router import ApiRequest, QueryParam
from cloud.compute.api import COMPUTE, router
from cloud.compute.api import server_store as store
from cloud.compute.api import server_views as views
from cloud.compute.api.server_access import is_admin, not_found, project_of, scope_of

DEFAULT_LIMIT, MAX_LIMIT = 1000, 1000
LIST_QUERY = (
    QueryParam("limit", {"type": "integer", "minimum": 0}),
    QueryParam("marker", description="Start after this server (its id)."),
    QueryParam("name", description="A regular expression the name matches."),
    QueryParam("status", description="ACTIVE, BUILD, ERROR, SHUTOFF, ..."),
    QueryParam("all_tenants", description="Admins: servers of every project."),
    QueryParam("project_id", description="Admins with all_tenants: this project only."),
)


class ServerCreate(BaseModel):
    """The ``server`` object of a boot request."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=255)
    imageRef: str = ""
    flavorRef: str = Field(min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict)
    key_name: str | None = None
    user_data: str | None = Field(default=None, max_length=65535)
    availability_zone: str | None = None
    min_count: int = Field(default=1, ge=1)
    max_count: int = Field(default=1, ge=1)
    networks: Literal["none", "auto"] | list[dict[str, Any]] | None = None
    security_groups: list[dict[str, Any]] | None = None
    adminPass: str | None = None
    accessIPv4: str | None = None
    accessIPv6: str | None = None
    config_drive: bool | str | None = None
    description: str | None = None
    tags: list[str] | None = None
    block_device_mapping_v2: list[dict[str, Any]] | None = None
    return_reservation_id: bool | None = None
    hostname: str | None = None
    disk_config: Literal["AUTO", "MANUAL"] | None = Field(default=None, alias="OS-DCF:diskConfig")


class ServerCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    server: ServerCreate
    scheduler_hints: dict[str, Any] | None = Field(default=None, alias="os:scheduler_hints")


def _ref(value: str) -> str:
    """An id, or the id at the end of a resource URL (``.../flavors/1``)."""
    return value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value


def _boot_image(spec: ServerCreate) -> str:
    """The image to boot: ``imageRef``, or the local image mapping a client may send instead."""
    image = _ref(spec.imageRef) if spec.imageRef else ""
    for bdm in spec.block_device_mapping_v2 or []:
        if bdm.get("source_type") != "image" or bdm.get("destination_type", "local") != "local":
            raise ApiError(
                400, "Block device mappings other than the local image are not supported."
            )
        image = image or str(bdm.get("uuid") or "")
    if not image:
        raise ApiError(400, "Booting from volume is not supported yet; give an imageRef.")
    return image


@router.post("/servers", body=ServerCreateRequest, status=202, errors=(400, 403, 409))
async def create_server(req: ApiRequest[ServerCreateRequest]) -> web.Response:
    """Accept a boot request; the build continues asynchronously."""
    spec = req.body.server
    project = project_of(req)
    if spec.min_count != 1 or spec.max_count != 1:
        raise ApiError(400, "Only one server per request is supported (min_count=max_count=1).")
    image_ref = _boot_image(spec)
    key = req.raw.headers.get("Idempotency-Key")
    svc = req.app[COMPUTE]
    async with svc.store.unit(source="compute-api") as uow:
        if key is not None:
            # Concurrent retries of one key wait for each other, so only one creates.
            await uow.conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"boot:{project}:{key}"
            )
            existing = await store.by_idempotency_key(uow.conn, project, key)
            if existing is not None:
                return views.created(req, existing, None)
        flavor = await store.find_flavor(uow.conn, _ref(spec.flavorRef), project)
        if flavor is None:
            raise ApiError(400, f"Flavor {spec.flavorRef} could not be found.")
        image = await store.image_status(uow.conn, image_ref, project)
        if image is None:
            raise ApiError(400, f"Image {image_ref} could not be found.")
        if image != "active":
            raise ApiError(400, f"Image {image_ref} is not active.")
        if spec.key_name is not None and not await uow.conn.fetchval(
            "SELECT 1 FROM cmp_keypairs WHERE user_id = $1 AND name = $2",
            req.auth.user.id,
            spec.key_name,
        ):
            raise ApiError(400, f"Invalid key_name provided: {spec.key_name}.")
        values = {
            "id": str(uuid.uuid4()),
            "name": spec.name,
            "project_id": project,
            "user_id": req.auth.user.id,
            "image_ref": image_ref,
            "metadata": spec.metadata,
            "key_name": spec.key_name,
            "user_data": spec.user_data,
            "availability_zone": spec.availability_zone,
            "idempotency_key": key,
        }
        row = await store.insert(uow, values, flavor)
        if row is None:
            raise ApiError(409, "A server with this Idempotency-Key is being created.")
    return views.created(req, row, spec.adminPass or secrets.token_urlsafe(9))


async def _list(req: ApiRequest[Any]) -> tuple[list[Any], int]:
    query = req.query
    limit = parse_limit(query, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    project: str | None = project_of(req)
    if is_admin(req) and query.get("all_tenants", "").lower() not in ("", "0", "false"):
        project = query.get("project_id") or None
    marker = query.get("marker")
    svc = req.app[COMPUTE]
    async with svc.store.pool.acquire() as conn:
        if marker is not None and await store.get(conn, marker, project) is None:
            raise ApiError(400, f"marker [{marker}] not found")
        try:
            rows = await store.page(
                conn,
                project_id=project,
                name=query.get("name"),
                status=(query.get("status") or "").upper() or None,
                marker=marker,
                limit=limit,
            )
        except asyncpg.InvalidRegularExpressionError:
            raise ApiError(400, f"Invalid name filter: {query.get('name')!r}.") from None
    return rows, limit


def _page_body(
    req: ApiRequest[Any], key: str, items: list[Any], rows: list[Any], limit: int
) -> dict[str, Any]:
    body: dict[str, Any] = {key: items}
    if rows and len(rows) == limit:
        url = req.url(req.operation.path.replace("{id}", ""))
        body["servers_links"] = [{"rel": "next", "href": next_url(url, req.query, rows[-1]["id"])}]
    return body


@router.get("/servers", query=LIST_QUERY)
async def list_servers(req: ApiRequest[Any]) -> dict[str, Any]:
    """Servers of the caller's project (ids, names, links)."""
    rows, limit = await _list(req)
    return _page_body(req, "servers", [views.brief(req, r) for r in rows], rows, limit)


@router.get("/servers/detail", query=LIST_QUERY)
async def list_servers_detail(req: ApiRequest[Any]) -> dict[str, Any]:
    """Servers of the caller's project, in full."""
    rows, limit = await _list(req)
    admin = is_admin(req)
    items = [views.detail(req, r, admin=admin) for r in rows]
    return _page_body(req, "servers", items, rows, limit)


@router.get("/servers/{id}", errors=(404,))
async def show_server(req: ApiRequest[Any]) -> dict[str, Any]:
    """One server, in full (a member sees only their project's)."""
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.pool.acquire() as conn:
        row = await store.get(conn, server_id, scope_of(req))
    if row is None:
        raise not_found(server_id)
    return {"server": views.detail(req, row, admin=is_admin(req), show_server_groups=True)}


@router.delete("/servers/{id}", status=204, errors=(404,))
async def delete_server(req: ApiRequest[Any]) -> None:
    """Delete a server in any state; it disappears once its host destroyed it (or timed out)."""
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        if not await store.request_delete(uow, server_id, scope_of(req)):
            raise not_found(server_id)
