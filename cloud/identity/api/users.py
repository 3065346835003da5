"""``/v3/users``: users, their password (self-service change) and their groups.

Passwords are stored as argon2id hashes and never shown. Whatever ends a user's right to their
tokens takes effect at once on every gateway: disabling or deleting the user, or a new password
(set by an administrator or changed by the user) revokes every token issued to them before.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from pydantic import StrictBool, StrictStr, StringConstraints

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
    fetch_user,
    list_scope,
    load_extra,
    load_for,
    load_json,
    merge_options,
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
from cloud.store.conn import DbConnection
from cloud.store.writes import UnitOfWork
from schemas.identity import UserCreated, UserDeleted, UserPasswordChanged, UserUpdated

# Keystone's default max_password_length: longer ones are refused, not silently hashed.
Password = Annotated[str, StringConstraints(strict=True, max_length=4096)]


class UserOptions(Strict):
    """Keystone's user options; null removes one."""

    ignore_change_password_upon_first_use: StrictBool | None = None
    ignore_password_expiry: StrictBool | None = None
    ignore_lockout_failure_attempts: StrictBool | None = None
    lock_password: StrictBool | None = None
    ignore_user_inactivity: StrictBool | None = None
    multi_factor_auth_rules: list[list[StrictStr]] | None = None
    multi_factor_auth_enabled: StrictBool | None = None


class UserCreate(WithExtras):
    name: IdentityName
    domain_id: IdString | None = None
    enabled: StrictBool = True
    password: Password | None = None
    default_project_id: IdString | None = None
    description: StrictStr | None = None
    options: UserOptions | None = None


class UserCreateBody(Strict):
    user: UserCreate


class UserUpdate(WithExtras):
    name: IdentityName | None = None
    domain_id: IdString | None = None
    enabled: StrictBool = True
    password: Password | None = None
    default_project_id: IdString | None = None
    description: StrictStr | None = None
    options: UserOptions | None = None


class UserUpdateBody(Strict):
    user: UserUpdate


class PasswordChange(Strict):
    password: Password
    original_password: Password


class PasswordChangeBody(Strict):
    user: PasswordChange


def _check_length(ident: Identity, password: str) -> None:
    minimum = ident.options.password_min_length
    if len(password) < minimum:
        raise ApiError(
            400,
            "The password does not meet the requirements: "
            f"it must be at least {minimum} characters long.",
        )


async def _revoke_user(uow: UnitOfWork, ident: Identity, user_id: str) -> None:
    await revocations.record(
        uow.conn, now=ident.clock.now(), keep_until=ident.keep_revocation_until(), user_id=user_id
    )


def _options(options: UserOptions | None, current: dict[str, Any]) -> dict[str, Any]:
    if options is None:
        return current
    return merge_options(current, options.model_dump(exclude_unset=True))


@router.post("/users", body=UserCreateBody, status=201, errors=(400, 403, 409))
async def create_user(req: ApiRequest[UserCreateBody]) -> dict[str, Any]:
    """Create a user."""
    body = req.body.user
    reject_nulls(body, "options")
    domain_id = body.domain_id or caller_domain(req)
    enforce(req, "identity:create_user", {"user": {"domain_id": domain_id, "name": body.name}})
    ident = identity(req)
    password_hash = None
    if body.password is not None:
        _check_length(ident, body.password)
        password_hash = await ident.hasher.hash(body.password)
    user_id = uuid.uuid4().hex
    detail = f"name {body.name} at domain ID {domain_id}"
    async with conflict_on_duplicate("user", detail), ident.write() as uow:
        await require_domain(uow.conn, domain_id)
        row = await uow.conn.fetchrow(
            """INSERT INTO id_users (id, name, domain_id, enabled, password_hash,
                   password_changed_at, default_project_id, description, extra, options)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb) RETURNING *""",
            user_id,
            body.name,
            domain_id,
            body.enabled,
            password_hash,
            ident.clock.now() if password_hash else None,
            body.default_project_id,
            body.description,
            dump_json(body.extras()),
            dump_json(_options(body.options, {})),
        )
        assert row is not None
        await uow.emit(UserCreated(resource_id=user_id, attributes=render_user(row)))
    return {"user": render_user(row, req)}


@router.get("/users", query=(FILTER_NAME, FILTER_DOMAIN, FILTER_ENABLED))
async def list_users(req: ApiRequest[Any]) -> dict[str, Any]:
    """List users (filters: name, domain_id, enabled)."""
    where = Where()
    list_scope(req, "identity:list_users", where, "domain_id", query_text(req, "domain_id"))
    where.eq("name", query_text(req, "name"))
    where.eq("enabled", query_bool(req, "enabled"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_users {where.sql()} ORDER BY name, id", *where.args
        )
    return {"users": [render_user(r, req) for r in rows], "links": collection_links(req)}


@router.get("/users/{user_id}", errors=(403, 404))
async def get_user(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a user."""
    user_id = path_id(req, "user_id", "user")
    row = await load_for(req, "identity:get_user", "user", user_id)
    return {"user": render_user(row, req)}


@router.patch("/users/{user_id}", body=UserUpdateBody, errors=(400, 403, 404, 409))
async def update_user(req: ApiRequest[UserUpdateBody]) -> dict[str, Any]:
    """Update a user (a new password, or disabling, revokes their tokens)."""
    user_id = path_id(req, "user_id", "user")
    body = req.body.user
    body.require_some("user")
    reject_nulls(body, "name", "domain_id", "options")
    current = await load_for(req, "identity:update_user", "user", user_id)
    check_id_unchanged(body, user_id)
    if body.given("domain_id") and body.domain_id != current["domain_id"]:
        raise ApiError(400, "Cannot change Domain ID.")
    ident = identity(req)
    password_hash = None
    if body.password is not None:
        _check_length(ident, body.password)
        password_hash = await ident.hasher.hash(body.password)
    detail = f"name {body.name} at domain ID {current['domain_id']}"
    async with conflict_on_duplicate("user", detail), ident.write() as uow:
        old = await _locked(uow.conn, user_id)
        row = await _apply_update(uow, ident, old, body, password_hash)
        await uow.emit(UserUpdated(resource_id=user_id, attributes=render_user(row)))
    return {"user": render_user(row, req)}


async def _locked(conn: DbConnection, user_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM id_users WHERE id = $1 FOR UPDATE", user_id)
    if row is None:
        raise not_found("user", user_id)
    return row


async def _apply_update(
    uow: UnitOfWork,
    ident: Identity,
    old: asyncpg.Record,
    body: UserUpdate,
    password_hash: str | None,
) -> asyncpg.Record:
    def pick(name: str) -> Any:
        return getattr(body, name) if body.given(name) else old[name]

    extra = load_extra(old)
    extra.update(body.extras())
    current_options = load_json(old["options"])
    new_password = body.given("password")
    enabled = pick("enabled")
    row = await uow.conn.fetchrow(
        """UPDATE id_users SET name = $2, enabled = $3, default_project_id = $4,
               description = $5, extra = $6::jsonb, options = $7::jsonb,
               password_hash = CASE WHEN $8 THEN $9 ELSE password_hash END,
               password_changed_at = CASE WHEN $8 THEN $10 ELSE password_changed_at END,
               failed_auth_count = CASE WHEN $8 OR $11 THEN 0 ELSE failed_auth_count END
           WHERE id = $1 RETURNING *""",
        old["id"],
        pick("name"),
        enabled,
        pick("default_project_id"),
        pick("description"),
        dump_json(extra),
        dump_json(_options(body.options, current_options)),
        new_password,
        password_hash,
        ident.clock.now() if password_hash else None,
        # Enabling a user (again) is how an administrator lifts a lockout.
        body.given("enabled") and body.enabled,
    )
    assert row is not None
    if new_password or (old["enabled"] and not enabled):
        await _revoke_user(uow, ident, old["id"])
    if new_password:
        await uow.emit(UserPasswordChanged(resource_id=old["id"]))
    return row


@router.delete("/users/{user_id}", status=204, errors=(403, 404))
async def delete_user(req: ApiRequest[Any]) -> None:
    """Delete a user, their memberships, role assignments and credentials."""
    user_id = path_id(req, "user_id", "user")
    await load_for(req, "identity:delete_user", "user", user_id)
    ident = identity(req)
    async with ident.write() as uow:
        await _locked(uow.conn, user_id)
        await uow.conn.execute(
            "DELETE FROM id_assignments WHERE actor_type = 'user' AND actor_id = $1", user_id
        )
        # Group memberships, credentials and application credentials follow (ON DELETE CASCADE).
        await uow.conn.execute("DELETE FROM id_users WHERE id = $1", user_id)
        await _revoke_user(uow, ident, user_id)
        await uow.emit(UserDeleted(resource_id=user_id))


@router.post("/users/{user_id}/password", body=PasswordChangeBody, status=204, errors=(400, 401))
async def change_password(req: ApiRequest[PasswordChangeBody]) -> None:
    """Change one's own password (the original one is required); revokes one's tokens."""
    user_id = path_id(req, "user_id", "user")
    ident = identity(req)
    async with ident.store.pool.acquire() as conn:
        user = await fetch_user(conn, user_id)
    enforce(
        req, "identity:change_password", target_of("user", user) if user else {}, user_id=user_id
    )
    if user is None:
        raise not_found("user", user_id)
    if load_json(user["options"]).get("lock_password"):
        raise ApiError(
            403,
            "You cannot change your password at this time due to password policy disallowing "
            "password changes. Please contact your administrator to reset your password.",
        )
    change = req.body.user
    if not await ident.hasher.verify(user["password_hash"] or "", change.original_password):
        raise ApiError(401, "Error when changing user password: Invalid user / password")
    _check_length(ident, change.password)
    password_hash = await ident.hasher.hash(change.password)
    async with ident.write() as uow:
        row = await uow.conn.fetchrow(
            """UPDATE id_users SET password_hash = $2, password_changed_at = $3,
                   failed_auth_count = 0 WHERE id = $1 RETURNING *""",
            user_id,
            password_hash,
            ident.clock.now(),
        )
        if row is None:
            raise not_found("user", user_id)
        await _revoke_user(uow, ident, user_id)
        await uow.emit(UserPasswordChanged(resource_id=user_id, attributes=render_user(row)))


@router.get("/users/{user_id}/groups", query=(FILTER_NAME,), errors=(403, 404))
async def list_user_groups(req: ApiRequest[Any]) -> dict[str, Any]:
    """List the groups a user belongs to."""
    user_id = path_id(req, "user_id", "user")
    await load_for(req, "identity:list_groups_for_user", "user", user_id)
    where = Where().add("id IN (SELECT group_id FROM id_group_members WHERE user_id = {})", user_id)
    where.eq("name", query_text(req, "name"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_groups {where.sql()} ORDER BY name, id", *where.args
        )
    return {"groups": [render_group(r, req) for r in rows], "links": collection_links(req)}
