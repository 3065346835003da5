"""``/v3/domains``: create, list, show, update and delete domains.

A domain must be disabled before it can be deleted (Keystone's guard against accidents); deleting
it removes everything it owns: projects, users, groups, domain roles and their role assignments.
Disabling or deleting a domain revokes every token scoped to it or to one of its projects.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from pydantic import StrictBool, StrictStr

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest
from cloud.identity import revocations
from cloud.identity.api import router
from cloud.identity.api._resources_render import (
    FILTER_ENABLED,
    FILTER_NAME,
    IdString,
    ResourceName,
    ResourceOptions,
    Strict,
    TagList,
    WithExtras,
    assert_mutable,
    check_id_unchanged,
    dump_json,
    fetch_domain,
    list_scope,
    load_extra,
    load_for,
    merge_options,
    path_id,
    query_bool,
    query_text,
    reject_nulls,
    render_domain,
    unique_tags,
)
from cloud.identity.api.common import (
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    not_found,
)
from cloud.store.conn import DbConnection
from cloud.store.writes import UnitOfWork
from schemas.identity import (
    DomainCreated,
    DomainDeleted,
    DomainUpdated,
    GroupDeleted,
    ProjectDeleted,
    RoleDeleted,
    UserDeleted,
)


class DomainCreate(WithExtras):
    name: ResourceName
    description: StrictStr | None = None
    enabled: StrictBool = True
    tags: TagList | None = None
    options: ResourceOptions | None = None
    explicit_domain_id: IdString | None = None


class DomainCreateBody(Strict):
    domain: DomainCreate


class DomainUpdate(WithExtras):
    name: ResourceName | None = None
    description: StrictStr | None = None
    enabled: StrictBool = True
    tags: TagList | None = None
    options: ResourceOptions | None = None


class DomainUpdateBody(Strict):
    domain: DomainUpdate


@router.post("/domains", body=DomainCreateBody, status=201, errors=(400, 403, 409))
async def create_domain(req: ApiRequest[DomainCreateBody]) -> dict[str, Any]:
    """Create a domain."""
    body = req.body.domain
    reject_nulls(body, "tags", "options")
    domain_id = body.explicit_domain_id or uuid.uuid4().hex
    enforce(req, "identity:create_domain", {"domain": {"id": domain_id, "name": body.name}})
    extra = body.extras()
    if body.tags:
        extra["tags"] = unique_tags(body.tags)
    if body.options is not None:
        extra["options"] = merge_options({}, body.options.model_dump(exclude_unset=True))
    name = body.name.strip()
    async with conflict_on_duplicate("domain", f"name {name}"), identity(req).write() as uow:
        if await fetch_domain(uow.conn, domain_id) is not None:
            raise ApiError(409, f"Conflict occurred attempting to store domain - id {domain_id}.")
        row = await uow.conn.fetchrow(
            """INSERT INTO id_domains (id, name, description, enabled, extra)
               VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING *""",
            domain_id,
            name,
            body.description or "",
            body.enabled,
            dump_json(extra),
        )
        assert row is not None
        await uow.emit(DomainCreated(resource_id=domain_id, attributes=render_domain(row)))
    return {"domain": render_domain(row, req)}


@router.get("/domains", query=(FILTER_NAME, FILTER_ENABLED))
async def list_domains(req: ApiRequest[Any]) -> dict[str, Any]:
    """List domains."""
    where = Where()
    list_scope(req, "identity:list_domains", where, "id", None)
    where.eq("name", query_text(req, "name"))
    where.eq("enabled", query_bool(req, "enabled"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_domains {where.sql()} ORDER BY name", *where.args
        )
    return {"domains": [render_domain(r, req) for r in rows], "links": collection_links(req)}


@router.get("/domains/{domain_id}", errors=(403, 404))
async def get_domain(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a domain."""
    domain_id = path_id(req, "domain_id", "domain")
    row = await load_for(req, "identity:get_domain", "domain", domain_id)
    return {"domain": render_domain(row, req)}


@router.patch("/domains/{domain_id}", body=DomainUpdateBody, errors=(400, 403, 404, 409))
async def update_domain(req: ApiRequest[DomainUpdateBody]) -> dict[str, Any]:
    """Update a domain (disabling it revokes the tokens scoped to it and its projects)."""
    domain_id = path_id(req, "domain_id", "domain")
    body = req.body.domain
    body.require_some("domain")
    reject_nulls(body, "name", "tags", "options")
    ident = identity(req)
    await load_for(req, "identity:update_domain", "domain", domain_id)
    check_id_unchanged(body, domain_id)
    name = body.name.strip() if body.name is not None else None
    async with conflict_on_duplicate("domain", f"name {name}"), ident.write() as uow:
        old = await _locked(uow.conn, domain_id)
        extra = load_extra(old)
        options = extra.get("options", {})
        assert_mutable("domain", domain_id, options, body.options and body.options.model_dump())
        extra.update(body.extras())
        if body.given("tags"):
            extra["tags"] = unique_tags(body.tags or [])
        if body.options is not None:
            extra["options"] = merge_options(options, body.options.model_dump(exclude_unset=True))
        enabled = body.enabled if body.given("enabled") else old["enabled"]
        description = old["description"]
        if body.given("description"):
            description = body.description or ""
        row = await uow.conn.fetchrow(
            """UPDATE id_domains SET name = coalesce($2, name), description = $3, enabled = $4,
                   extra = $5::jsonb WHERE id = $1 RETURNING *""",
            domain_id,
            name,
            description,
            enabled,
            dump_json(extra),
        )
        assert row is not None
        if old["enabled"] and not enabled:
            await revocations.record(
                uow.conn,
                now=ident.clock.now(),
                keep_until=ident.keep_revocation_until(),
                domain_id=domain_id,
            )
        await uow.emit(DomainUpdated(resource_id=domain_id, attributes=render_domain(row)))
    return {"domain": render_domain(row, req)}


@router.delete("/domains/{domain_id}", status=204, errors=(403, 404))
async def delete_domain(req: ApiRequest[Any]) -> None:
    """Delete a disabled domain and everything it owns."""
    domain_id = path_id(req, "domain_id", "domain")
    ident = identity(req)
    await load_for(req, "identity:delete_domain", "domain", domain_id)
    async with ident.write() as uow:
        row = await _locked(uow.conn, domain_id)
        if row["enabled"]:
            raise ApiError(403, "Cannot delete a domain that is enabled, please disable it first.")
        assert_mutable("domain", domain_id, load_extra(row).get("options", {}), None)
        await _delete_contents(uow, domain_id)
        await uow.conn.execute("DELETE FROM id_domains WHERE id = $1", domain_id)
        await revocations.record(
            uow.conn,
            now=ident.clock.now(),
            keep_until=ident.keep_revocation_until(),
            domain_id=domain_id,
        )
        await uow.emit(DomainDeleted(resource_id=domain_id))


async def _locked(conn: DbConnection, domain_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM id_domains WHERE id = $1 FOR UPDATE", domain_id)
    if row is None:
        raise not_found("domain", domain_id)
    return row


async def _delete_contents(uow: UnitOfWork, domain_id: str) -> None:
    """Remove the domain's projects, users, groups and roles, and every grant naming them."""
    conn = uow.conn
    projects = [
        r["id"]
        for r in await conn.fetch("SELECT id FROM id_projects WHERE domain_id = $1", domain_id)
    ]
    users = [
        r["id"] for r in await conn.fetch("SELECT id FROM id_users WHERE domain_id = $1", domain_id)
    ]
    groups = [
        r["id"]
        for r in await conn.fetch("SELECT id FROM id_groups WHERE domain_id = $1", domain_id)
    ]
    await conn.execute(
        """DELETE FROM id_assignments
           WHERE (target_type = 'project' AND target_id = ANY($1::text[]))
              OR (target_type = 'domain' AND target_id = $4)
              OR (actor_type = 'user' AND actor_id = ANY($2::text[]))
              OR (actor_type = 'group' AND actor_id = ANY($3::text[]))""",
        projects,
        users,
        groups,
        domain_id,
    )
    await conn.execute("DELETE FROM id_credentials WHERE project_id = ANY($1::text[])", projects)
    # Children point at parents: cut the links, then the whole domain's projects go at once.
    await conn.execute("UPDATE id_projects SET parent_id = NULL WHERE domain_id = $1", domain_id)
    await conn.execute("DELETE FROM id_projects WHERE domain_id = $1", domain_id)
    await conn.execute("DELETE FROM id_users WHERE domain_id = $1", domain_id)
    await conn.execute("DELETE FROM id_groups WHERE domain_id = $1", domain_id)
    roles = await conn.fetch("DELETE FROM id_roles WHERE domain_id = $1 RETURNING id", domain_id)
    for project_id in projects:
        await uow.emit(ProjectDeleted(resource_id=project_id))
    for user_id in users:
        await uow.emit(UserDeleted(resource_id=user_id))
    for group_id in groups:
        await uow.emit(GroupDeleted(resource_id=group_id))
    for role in roles:
        await uow.emit(RoleDeleted(resource_id=role["id"]))
