"""``/servers``: boot, list, show and delete servers (Nova v2.1).

A boot writes the instance row and ``compute.instance.requested`` in one transaction and answers
202; the scheduler, conductor and compute agent finish it (see :mod:`cloud.conductor.actor`).
``Idempotency-Key`` makes a retried boot return the server the first request created (the first
of a multi-create). The body and its per-microversion rules (``networks``, hints, tags) live in
:mod:`cloud.compute.api.server_boot`, the list query in :mod:`cloud.compute.api.server_query`.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg
from aiohttp import web

from cloud.api.errors import ApiError
from cloud.api.listing import next_url
from cloud.api.router import ApiRequest, QueryParam
from cloud.compute import action_log, boot_policy
from cloud.compute.api import COMPUTE, router, server_query
from cloud.compute.api import server_boot as boot
from cloud.compute.api import server_store as store
from cloud.compute.api import server_views as views
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import (
    check_unlocked,
    is_admin,
    locked_server,
    not_found,
    project_of,
    scope_of,
)
from cloud.compute.api.server_boot import ServerCreate, ServerCreateRequest

LIST_QUERY = (
    QueryParam("limit", {"type": "integer", "minimum": 0}),
    QueryParam("marker", description="Start after this server (its id)."),
    QueryParam("name", description="A regular expression the name matches."),
    QueryParam("status", description="ACTIVE, BUILD, ERROR, SHUTOFF, ... (repeatable)."),
    QueryParam("all_tenants", description="Admins: servers of every project."),
    QueryParam("project_id", description="Admins with all_tenants: this project only."),
    QueryParam("changes-since", description="ISO 8601: servers changed since (deleted too)."),
    QueryParam("changes-before", description="ISO 8601 (2.66): servers changed before."),
    QueryParam("tags", description="2.26: servers with all of these tags (comma-separated)."),
    QueryParam("tags-any", description="2.26: servers with any of these tags."),
    QueryParam("not-tags", description="2.26: servers without all of these tags."),
    QueryParam("not-tags-any", description="2.26: servers without any of these tags."),
    QueryParam("image"),
    QueryParam("flavor"),
    QueryParam("reservation_id"),
    QueryParam("locked", description="2.73: true or false."),
    QueryParam("sort_key", description="Nova's sort keys (repeatable)."),
    QueryParam("sort_dir", description="asc or desc (repeatable)."),
)


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
    """Accept a boot of ``min_count``..``max_count`` servers; the builds continue asynchronously."""
    spec, ver = req.body.server, version(req)
    project = project_of(req)
    boot.check(spec, ver)
    networks = boot.networks(spec, ver)
    hints = boot.scheduler_hints(req.body.hints())
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
                return _created(req, spec, existing, None)
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
        count = await boot_policy.admit(
            uow.conn,
            project_id=project,
            user_id=req.auth.user.id,
            flavor=flavor,
            min_count=spec.min_count,
            max_count=spec.max_count,
            metadata_items=len(spec.metadata),
            hints=hints,
        )
        ids = [str(uuid.uuid4()) for _ in range(count)]
        reservation = "r-" + secrets.token_hex(4)
        rows = []
        for index, (server_id, (name, hostname)) in enumerate(
            zip(ids, boot.names(spec, count, ids), strict=True)
        ):
            await action_log.start(uow, req, server_id, "create")
            values = {
                "id": server_id,
                "name": name,
                "project_id": project,
                "user_id": req.auth.user.id,
                "image_ref": image_ref,
                "metadata": spec.metadata,
                "key_name": spec.key_name,
                "user_data": spec.user_data,
                "availability_zone": spec.availability_zone,
                # Only the first server holds the key: a retry answers with it.
                "idempotency_key": key if index == 0 else None,
                "description": spec.description,
                "tags": list(dict.fromkeys(spec.tags or [])),
                "scheduler_hints": hints,
                "reservation_id": reservation,
                "launch_index": index,
                "hostname": hostname,
                "networks": networks,
            }
            row = await store.insert(uow, values, flavor)
            if row is None:
                raise ApiError(409, "A server with this Idempotency-Key is being created.")
            rows.append(row)
        await boot_policy.admitted(uow.conn, project_id=project, instance_ids=ids, hints=hints)
    return _created(req, spec, rows[0], spec.adminPass or secrets.token_urlsafe(9))


def _created(
    req: ApiRequest[Any], spec: ServerCreate, row: Any, admin_pass: str | None
) -> web.Response:
    if spec.return_reservation_id:
        return web.json_response({"reservation_id": row["reservation_id"]}, status=202)
    return views.created(req, row, admin_pass)


async def _list(req: ApiRequest[Any]) -> tuple[list[Any], int]:
    q = server_query.parse(
        req.query,
        ver=version(req),
        admin=is_admin(req),
        project_id=project_of(req),
        max_limit=req.app[COMPUTE].settings.compute_max_limit,
    )
    async with req.app[COMPUTE].store.pool.acquire() as conn:
        try:
            rows = await store.page(conn, q)
        except asyncpg.InvalidRegularExpressionError:
            raise ApiError(
                400, "Invalid regular expression in a name or description filter."
            ) from None
    if rows is None:
        raise ApiError(400, f"marker [{q.marker}] not found")
    return rows, q.limit


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
        server = views.detail(req, row, admin=is_admin(req), show_server_groups=True)
        if "server_groups" in server:
            server["server_groups"] = await boot_policy.server_groups_of(conn, server_id)
    return {"server": server}


@router.delete("/servers/{id}", status=204, errors=(404,))
async def delete_server(req: ApiRequest[Any]) -> None:
    """Delete a server in any state; it disappears once its host destroyed it (or timed out)."""
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await locked_server(uow.conn, server_id, scope_of(req), "locked_by")
        check_unlocked(req, server_id, row["locked_by"])
        await action_log.start(uow, req, server_id, "delete")
        if not await store.request_delete(uow, server_id, scope_of(req)):
            raise not_found(server_id)
