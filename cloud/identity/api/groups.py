"""``/v3/groups``: groups and their members.

A user's roles include those of their groups, so losing a membership (removal, or the group's
deletion) revokes the user's tokens at once: they are reissued with the roles that remain.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import StrictStr

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest
from cloud.identity import revocations
from cloud.identity.api import router
from cloud.identity.api._resources_render import (
    FILTER_DOMAIN,
    FILTER_ENABLED,
    FILTER_NAME,
    IdentityName,
    IdString,
    Strict,
    WithExtras,
    caller_domain,
    check_id_unchanged,
    dump_json,
    fetch_group,
    fetch_user,
    list_scope,
    load_extra,
    load_for,
    path_id,
    query_bool,
    query_text,
    reject_nulls,
    render_group,
    render_user,
    require_domain,
    target_of,
)
from cloud.identity.api.common import (
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    not_found,
)
from cloud.identity.service import Identity
from cloud.store.writes import UnitOfWork
from schemas.identity import (
    GroupCreated,
    GroupDeleted,
    GroupMemberAdded,
    GroupMemberRemoved,
    GroupUpdated,
)


class GroupCreate(WithExtras):
    name: IdentityName
    domain_id: IdString | None = None
    description: StrictStr | None = None


class GroupCreateBody(Strict):
    group: GroupCreate


class GroupUpdate(WithExtras):
    name: IdentityName | None = None
    domain_id: IdString | None = None
    description: StrictStr | None = None


class GroupUpdateBody(Strict):
    group: GroupUpdate


async def _revoke_users(uow: UnitOfWork, ident: Identity, user_ids: list[str]) -> None:
    for user_id in user_ids:
        await revocations.record(
            uow.conn,
            now=ident.clock.now(),
            keep_until=ident.keep_revocation_until(),
            user_id=user_id,
        )


@router.post("/groups", body=GroupCreateBody, status=201, errors=(400, 403, 409))
async def create_group(req: ApiRequest[GroupCreateBody]) -> dict[str, Any]:
    """Create a group."""
    body = req.body.group
    domain_id = body.domain_id or caller_domain(req)
    enforce(req, "identity:create_group", {"group": {"domain_id": domain_id, "name": body.name}})
    group_id = uuid.uuid4().hex
    detail = f"name {body.name} at domain ID {domain_id}"
    async with conflict_on_duplicate("group", detail), identity(req).write() as uow:
        await require_domain(uow.conn, domain_id)
        row = await uow.conn.fetchrow(
            """INSERT INTO id_groups (id, name, domain_id, description, extra)
               VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING *""",
            group_id,
            body.name,
            domain_id,
            body.description or "",
            dump_json(body.extras()),
        )
        assert row is not None
        await uow.emit(GroupCreated(resource_id=group_id, attributes=render_group(row)))
    return {"group": render_group(row, req)}


@router.get("/groups", query=(FILTER_NAME, FILTER_DOMAIN))
async def list_groups(req: ApiRequest[Any]) -> dict[str, Any]:
    """List groups (filters: name, domain_id)."""
    where = Where()
    list_scope(req, "identity:list_groups", where, "domain_id", query_text(req, "domain_id"))
    where.eq("name", query_text(req, "name"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_groups {where.sql()} ORDER BY name, id", *where.args
        )
    return {"groups": [render_group(r, req) for r in rows], "links": collection_links(req)}


@router.get("/groups/{group_id}", errors=(403, 404))
async def get_group(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a group."""
    group_id = path_id(req, "group_id", "group")
    row = await load_for(req, "identity:get_group", "group", group_id)
    return {"group": render_group(row, req)}


@router.patch("/groups/{group_id}", body=GroupUpdateBody, errors=(400, 403, 404, 409))
async def update_group(req: ApiRequest[GroupUpdateBody]) -> dict[str, Any]:
    """Update a group's name, description or extra attributes."""
    group_id = path_id(req, "group_id", "group")
    body = req.body.group
    body.require_some("group")
    reject_nulls(body, "name", "domain_id")
    current = await load_for(req, "identity:update_group", "group", group_id)
    check_id_unchanged(body, group_id)
    if body.given("domain_id") and body.domain_id != current["domain_id"]:
        raise ApiError(400, "Cannot change Domain ID.")
    detail = f"name {body.name} at domain ID {current['domain_id']}"
    async with conflict_on_duplicate("group", detail), identity(req).write() as uow:
        old = await uow.conn.fetchrow("SELECT * FROM id_groups WHERE id = $1 FOR UPDATE", group_id)
        if old is None:
            raise not_found("group", group_id)
        extra = load_extra(old)
        extra.update(body.extras())
        description = (body.description or "") if body.given("description") else old["description"]
        row = await uow.conn.fetchrow(
            """UPDATE id_groups SET name = coalesce($2, name), description = $3,
                   extra = $4::jsonb WHERE id = $1 RETURNING *""",
            group_id,
            body.name,
            description,
            dump_json(extra),
        )
        assert row is not None
        await uow.emit(GroupUpdated(resource_id=group_id, attributes=render_group(row)))
    return {"group": render_group(row, req)}


@router.delete("/groups/{group_id}", status=204, errors=(403, 404))
async def delete_group(req: ApiRequest[Any]) -> None:
    """Delete a group and its role assignments; revokes its members' tokens."""
    group_id = path_id(req, "group_id", "group")
    await load_for(req, "identity:delete_group", "group", group_id)
    ident = identity(req)
    async with ident.write() as uow:
        members = await uow.conn.fetch(
            "SELECT user_id FROM id_group_members WHERE group_id = $1", group_id
        )
        await uow.conn.execute(
            "DELETE FROM id_assignments WHERE actor_type = 'group' AND actor_id = $1", group_id
        )
        deleted = await uow.conn.fetchval(
            "DELETE FROM id_groups WHERE id = $1 RETURNING id", group_id
        )
        if deleted is None:
            raise not_found("group", group_id)
        await _revoke_users(uow, ident, [m["user_id"] for m in members])
        await uow.emit(GroupDeleted(resource_id=group_id))


@router.get("/groups/{group_id}/users", query=(FILTER_NAME, FILTER_ENABLED), errors=(403, 404))
async def list_group_users(req: ApiRequest[Any]) -> dict[str, Any]:
    """List the members of a group."""
    group_id = path_id(req, "group_id", "group")
    await load_for(req, "identity:list_users_in_group", "group", group_id)
    where = Where().add(
        "id IN (SELECT user_id FROM id_group_members WHERE group_id = {})", group_id
    )
    where.eq("name", query_text(req, "name"))
    where.eq("enabled", query_bool(req, "enabled"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_users {where.sql()} ORDER BY name, id", *where.args
        )
    return {"users": [render_user(r, req) for r in rows], "links": collection_links(req)}


async def _membership(req: ApiRequest[Any], rule: str) -> tuple[str, str]:
    """(group id, user id) of a membership URL, once ``rule`` allows the caller on both."""
    group_id = path_id(req, "group_id", "group")
    user_id = path_id(req, "user_id", "user")
    async with identity(req).store.pool.acquire() as conn:
        group = await fetch_group(conn, group_id)
        user = await fetch_user(conn, user_id)
    target: dict[str, Any] = {}
    if group is not None:
        target |= target_of("group", group)
    if user is not None:
        target |= target_of("user", user)
    enforce(req, rule, target)
    if group is None:
        raise not_found("group", group_id)
    if user is None:
        raise not_found("user", user_id)
    return group_id, user_id


@router.put("/groups/{group_id}/users/{user_id}", status=204, errors=(403, 404))
async def add_user_to_group(req: ApiRequest[Any]) -> None:
    """Add a user to a group."""
    group_id, user_id = await _membership(req, "identity:add_user_to_group")
    async with (
        conflict_on_duplicate("group membership", f"user {user_id}"),
        identity(req).write() as uow,
    ):
        added = await uow.conn.fetchval(
            """INSERT INTO id_group_members (group_id, user_id) VALUES ($1, $2)
               ON CONFLICT DO NOTHING RETURNING 1""",
            group_id,
            user_id,
        )
        if added:
            await uow.emit(GroupMemberAdded(resource_id=group_id, attributes={"user_id": user_id}))


async def _check_member(req: ApiRequest[Any]) -> None:
    group_id, user_id = await _membership(req, "identity:check_user_in_group")
    async with identity(req).store.pool.acquire() as conn:
        member = await conn.fetchval(
            "SELECT 1 FROM id_group_members WHERE group_id = $1 AND user_id = $2",
            group_id,
            user_id,
        )
    if not member:
        raise ApiError(404, f"User {user_id} is not a member of group {group_id}.")


@router.head("/groups/{group_id}/users/{user_id}", status=204, errors=(403, 404))
async def check_user_in_group(req: ApiRequest[Any]) -> None:
    """Check that a user is a member of a group (204, else 404)."""
    await _check_member(req)


@router.get("/groups/{group_id}/users/{user_id}", status=204, errors=(403, 404))
async def get_user_in_group(req: ApiRequest[Any]) -> None:
    """Check that a user is a member of a group (204, else 404)."""
    await _check_member(req)


@router.delete("/groups/{group_id}/users/{user_id}", status=204, errors=(403, 404))
async def remove_user_from_group(req: ApiRequest[Any]) -> None:
    """Remove a user from a group; revokes their tokens (their roles may shrink)."""
    group_id, user_id = await _membership(req, "identity:remove_user_from_group")
    ident = identity(req)
    async with ident.write() as uow:
        removed = await uow.conn.fetchval(
            "DELETE FROM id_group_members WHERE group_id = $1 AND user_id = $2 RETURNING 1",
            group_id,
            user_id,
        )
        if not removed:
            raise ApiError(404, f"User {user_id} is not a member of group {group_id}.")
        await _revoke_users(uow, ident, [user_id])
        await uow.emit(GroupMemberRemoved(resource_id=group_id, attributes={"user_id": user_id}))
