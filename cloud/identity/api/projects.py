"""``/v3/projects``: projects with their hierarchy, and ``/v3/users/{id}/projects``.

A project lives in one domain, under a parent project of that domain or at the top (where Keystone
shows the domain as its ``parent_id``). Keystone's hierarchy rules hold: a project goes only under
an enabled branch, at most five levels deep; it is disabled only once its subtree is; it is
re-enabled only under enabled parents; it is deleted only once it has no children. Disabling or
deleting one revokes every token scoped to it. Tags: see ``_project_tags``.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from pydantic import StrictBool, StrictStr

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity import revocations
from cloud.identity.api import _project_tags, router  # noqa: F401  (_project_tags: its routes)
from cloud.identity.api._project_tree import (
    MAX_DEPTH,
    expand,
    lineage,
    subtree_enabled,
    user_project_ids,
)
from cloud.identity.api._resources_render import (
    FILTER_DOMAIN,
    FILTER_ENABLED,
    FILTER_NAME,
    IdString,
    ResourceName,
    ResourceOptions,
    Strict,
    TagList,
    WithExtras,
    assert_mutable,
    caller_domain,
    check_id_unchanged,
    dump_json,
    fetch_domain,
    fetch_project,
    list_scope,
    load_extra,
    load_for,
    merge_options,
    path_id,
    query_bool,
    query_text,
    reject_nulls,
    render_domain_as_project,
    render_project,
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
from schemas.identity import ProjectCreated, ProjectDeleted, ProjectUpdated

_TAG_FILTERS = (
    QueryParam("tags", description="Comma-separated tags a project must all have."),
    QueryParam("tags-any", description="Comma-separated tags a project must have one of."),
    QueryParam("not-tags", description="Comma-separated tags a project must not all have."),
    QueryParam("not-tags-any", description="Comma-separated tags a project must have none of."),
)
_LIST_FILTERS = (
    FILTER_NAME,
    FILTER_DOMAIN,
    FILTER_ENABLED,
    QueryParam("parent_id", description="Only the children of this project (or domain)."),
    QueryParam("is_domain", {"type": "boolean"}, "true: list the domains, as projects."),
    *_TAG_FILTERS,
)
_EXPAND = tuple(
    QueryParam(name, {"type": "boolean"}, f"Add the project's {what}.")
    for name, what in (
        ("parents_as_ids", "parents as nested ids"),
        ("parents_as_list", "parents as a list"),
        ("subtree_as_ids", "subtree as nested ids"),
        ("subtree_as_list", "subtree as a list"),
    )
)


class ProjectCreate(WithExtras):
    name: ResourceName
    description: StrictStr | None = None
    domain_id: IdString | None = None
    parent_id: IdString | None = None
    enabled: StrictBool = True
    is_domain: StrictBool = False
    tags: TagList | None = None
    options: ResourceOptions | None = None


class ProjectCreateBody(Strict):
    project: ProjectCreate


class ProjectUpdate(WithExtras):
    name: ResourceName | None = None
    description: StrictStr | None = None
    enabled: StrictBool = True
    tags: TagList | None = None
    options: ResourceOptions | None = None
    domain_id: IdString | None = None
    parent_id: IdString | None = None
    is_domain: StrictBool = False


class ProjectUpdateBody(Strict):
    project: ProjectUpdate


def _target(project: dict[str, Any]) -> dict[str, Any]:
    return {"project": project}


@router.post("/projects", body=ProjectCreateBody, status=201, errors=(400, 403, 409))
async def create_project(req: ApiRequest[ProjectCreateBody]) -> dict[str, Any]:
    """Create a project (top level in its domain, or under ``parent_id``)."""
    body = req.body.project
    reject_nulls(body, "tags", "options")
    domain_id = body.domain_id or caller_domain(req)
    name = body.name.strip()
    enforce(req, "identity:create_project", _target({"domain_id": domain_id, "name": name}))
    if body.is_domain:
        raise ApiError(400, "Projects acting as domains are created with POST /v3/domains.")
    extra = body.extras()
    if body.options is not None:
        extra["options"] = merge_options({}, body.options.model_dump(exclude_unset=True))
    project_id = uuid.uuid4().hex
    ident = identity(req)
    async with conflict_on_duplicate("project", f"name {name}"), ident.write() as uow:
        parent_id, domain_id = await _placement(req, uow.conn, body, domain_id)
        if parent_id is None and await fetch_domain(uow.conn, domain_id) is None:
            raise ApiError(400, f"Could not find domain: {domain_id}.")
        row = await uow.conn.fetchrow(
            """INSERT INTO id_projects
                   (id, name, domain_id, parent_id, description, enabled, tags, extra)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) RETURNING *""",
            project_id,
            name,
            domain_id,
            parent_id,
            body.description or "",
            body.enabled,
            unique_tags(body.tags or []),
            dump_json(extra),
        )
        assert row is not None
        await uow.emit(ProjectCreated(resource_id=project_id, attributes=render_project(row)))
    return {"project": render_project(row, req)}


async def _placement(
    req: ApiRequest[Any], conn: DbConnection, body: ProjectCreate, domain_id: str
) -> tuple[str | None, str]:
    """(parent project, None at the top level; domain) of a new project, once Keystone's rules
    allow it there."""
    if body.parent_id is None or body.parent_id == domain_id:
        return None, domain_id
    parent = await fetch_project(conn, body.parent_id)
    if parent is None:
        if body.domain_id is None and await fetch_domain(conn, body.parent_id) is not None:
            # A domain as parent_id: the top level of that domain, as Keystone shows it.
            enforce(req, "identity:create_project", _target({"domain_id": body.parent_id}))
            return None, body.parent_id
        raise ApiError(400, f"Could not find project: {body.parent_id}.")
    if body.domain_id is not None and parent["domain_id"] != body.domain_id:
        raise ApiError(
            400,
            f"Cannot create project, since it specifies its domain_id {body.domain_id}, but "
            f"specifies a parent in a different domain ({parent['domain_id']}).",
        )
    if parent["domain_id"] != domain_id:
        enforce(req, "identity:create_project", _target({"domain_id": parent["domain_id"]}))
    chain = await lineage(conn, parent["id"])
    for ancestor in chain:
        if not ancestor["enabled"]:
            raise ApiError(
                400,
                "cannot create a project in a branch containing a disabled project: "
                f"{ancestor['id']}",
            )
    if len(chain) + 1 > MAX_DEPTH:
        raise ApiError(403, f"Max hierarchy depth reached for {parent['id']} branch.")
    return str(parent["id"]), str(parent["domain_id"])


@router.get("/projects", query=_LIST_FILTERS)
async def list_projects(req: ApiRequest[Any]) -> dict[str, Any]:
    """List projects (filters: name, domain_id, enabled, parent_id, is_domain, tags...)."""
    where = Where()
    list_scope(req, "identity:list_projects", where, "domain_id", query_text(req, "domain_id"))
    where.eq("name", query_text(req, "name"))
    where.eq("enabled", query_bool(req, "enabled"))
    parent = query_text(req, "parent_id")
    if parent is not None:
        where.add("coalesce(parent_id, domain_id) = {}", parent)
    for param, template in (
        ("tags", "tags @> {}::text[]"),
        ("tags-any", "tags && {}::text[]"),
        ("not-tags", "NOT (tags @> {}::text[])"),
        ("not-tags-any", "NOT (tags && {}::text[])"),
    ):
        value = query_text(req, param)
        if value is not None:
            where.add(template, [t for t in value.split(",") if t])
    async with identity(req).store.pool.acquire() as conn:
        if query_bool(req, "is_domain"):
            return await _domains_as_projects(req, conn)
        rows = await conn.fetch(
            f"SELECT * FROM id_projects {where.sql()} ORDER BY name, id", *where.args
        )
    return {"projects": [render_project(r, req) for r in rows], "links": collection_links(req)}


async def _domains_as_projects(req: ApiRequest[Any], conn: DbConnection) -> dict[str, Any]:
    where = Where().eq("name", query_text(req, "name")).eq("enabled", query_bool(req, "enabled"))
    if req.auth.domain is not None:
        where.eq("id", req.auth.domain.id)
    rows = await conn.fetch(f"SELECT * FROM id_domains {where.sql()} ORDER BY name", *where.args)
    return {
        "projects": [render_domain_as_project(r, req) for r in rows],
        "links": collection_links(req),
    }


@router.get("/projects/{project_id}", query=_EXPAND, errors=(403, 404))
async def get_project(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a project (optionally with its parents or subtree)."""
    project_id = path_id(req, "project_id", "project")
    row = await load_for(req, "identity:get_project", "project", project_id)
    async with identity(req).store.pool.acquire() as conn:
        project = await expand(req, conn, row, render_project(row, req))
    return {"project": project}


@router.patch("/projects/{project_id}", body=ProjectUpdateBody, errors=(400, 403, 404, 409))
async def update_project(req: ApiRequest[ProjectUpdateBody]) -> dict[str, Any]:
    """Update a project (disabling it revokes the tokens scoped to it)."""
    project_id = path_id(req, "project_id", "project")
    body = req.body.project
    body.require_some("project")
    reject_nulls(body, "name", "tags", "options", "domain_id")
    current = await load_for(req, "identity:update_project", "project", project_id)
    check_id_unchanged(body, project_id)
    if body.given("domain_id") and body.domain_id != current["domain_id"]:
        raise ApiError(400, "Cannot change Domain ID.")
    if body.given("parent_id") and body.parent_id != (current["parent_id"] or current["domain_id"]):
        raise ApiError(403, "Update of `parent_id` is not allowed.")
    if body.is_domain:
        raise ApiError(400, "Update of `is_domain` is not allowed.")
    name = body.name.strip() if body.name is not None else None
    ident = identity(req)
    async with conflict_on_duplicate("project", f"name {name}"), ident.write() as uow:
        old = await _locked(uow.conn, project_id)
        extra = load_extra(old)
        options = extra.get("options", {})
        assert_mutable("project", project_id, options, body.options and body.options.model_dump())
        extra.update(body.extras())
        if body.options is not None:
            extra["options"] = merge_options(options, body.options.model_dump(exclude_unset=True))
        enabled = body.enabled if body.given("enabled") else old["enabled"]
        await _check_enable_change(uow.conn, old, enabled)
        row = await uow.conn.fetchrow(
            """UPDATE id_projects SET name = coalesce($2, name), description = $3, enabled = $4,
                   tags = $5, extra = $6::jsonb WHERE id = $1 RETURNING *""",
            project_id,
            name,
            (body.description or "") if body.given("description") else old["description"],
            enabled,
            unique_tags(body.tags or []) if body.given("tags") else old["tags"],
            dump_json(extra),
        )
        assert row is not None
        if old["enabled"] and not enabled:
            await revocations.record(
                uow.conn,
                now=ident.clock.now(),
                keep_until=ident.keep_revocation_until(),
                project_id=project_id,
            )
        await uow.emit(ProjectUpdated(resource_id=project_id, attributes=render_project(row)))
    return {"project": render_project(row, req)}


async def _locked(conn: DbConnection, project_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM id_projects WHERE id = $1 FOR UPDATE", project_id)
    if row is None:
        raise not_found("project", project_id)
    return row


async def _check_enable_change(conn: DbConnection, row: asyncpg.Record, enabled: bool) -> None:
    if row["enabled"] and not enabled and await subtree_enabled(conn, row["id"]):
        raise ApiError(
            403,
            f"Cannot disable project {row['id']} since its subtree contains enabled projects.",
        )
    reenabling = not row["enabled"] and enabled and row["parent_id"] is not None
    if reenabling and any(not p["enabled"] for p in await lineage(conn, row["parent_id"])):
        raise ApiError(403, f"Cannot enable project {row['id']} since it has disabled parents")


@router.delete("/projects/{project_id}", status=204, errors=(403, 404))
async def delete_project(req: ApiRequest[Any]) -> None:
    """Delete a project without children, its role assignments and credentials."""
    project_id = path_id(req, "project_id", "project")
    await load_for(req, "identity:delete_project", "project", project_id)
    ident = identity(req)
    async with ident.write() as uow:
        row = await _locked(uow.conn, project_id)
        assert_mutable("project", project_id, load_extra(row).get("options", {}), None)
        if await uow.conn.fetchval("SELECT 1 FROM id_projects WHERE parent_id = $1", project_id):
            raise ApiError(
                403,
                f"Cannot delete the project {project_id} since it is not a leaf in the "
                "hierarchy. Use the cascade option if you want to delete a whole subtree.",
            )
        await uow.conn.execute(
            "DELETE FROM id_assignments WHERE target_type = 'project' AND target_id = $1",
            project_id,
        )
        await uow.conn.execute("DELETE FROM id_credentials WHERE project_id = $1", project_id)
        await uow.conn.execute("DELETE FROM id_projects WHERE id = $1", project_id)
        await revocations.record(
            uow.conn,
            now=ident.clock.now(),
            keep_until=ident.keep_revocation_until(),
            project_id=project_id,
        )
        await uow.emit(ProjectDeleted(resource_id=project_id))


@router.get(
    "/users/{user_id}/projects", query=(FILTER_NAME, FILTER_DOMAIN, FILTER_ENABLED), errors=(404,)
)
async def list_user_projects(req: ApiRequest[Any]) -> dict[str, Any]:
    """List the projects a user has a role on (directly, through a group, or inherited)."""
    user_id = path_id(req, "user_id", "user")
    async with identity(req).store.pool.acquire() as conn:
        user = await conn.fetchrow("SELECT id, domain_id FROM id_users WHERE id = $1", user_id)
        target = {} if user is None else {"user": {"id": user_id, "domain_id": user["domain_id"]}}
        enforce(req, "identity:list_user_projects", target, user_id=user_id)
        if user is None:
            raise not_found("user", user_id)
        where = Where().add("id = ANY({}::text[])", await user_project_ids(conn, user_id))
        where.eq("name", query_text(req, "name"))
        where.eq("domain_id", query_text(req, "domain_id"))
        where.eq("enabled", query_bool(req, "enabled"))
        rows = await conn.fetch(
            f"SELECT * FROM id_projects {where.sql()} ORDER BY name, id", *where.args
        )
    return {"projects": [render_project(r, req) for r in rows], "links": collection_links(req)}
