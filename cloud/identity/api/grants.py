"""Role grants: a user or group holds a role on a project, a domain or the system.

Every grant is addressed by its URL, as in Keystone::

    /projects/{project_id}/users/{user_id}/roles/{role_id}          (and groups; and domains)
    /OS-INHERIT/domains/{domain_id}/users/{user_id}/roles/{role_id}/inherited_to_projects
    /OS-INHERIT/projects/{project_id}/groups/{group_id}/roles/{role_id}/inherited_to_projects
    /system/users/{user_id}/roles/{role_id}                         (and groups)

``PUT`` grants (204, idempotent), ``HEAD``/``GET`` check (204 or 404), ``DELETE`` revokes (and
kills, at once, the tokens of the user, or of every member of the group, on that scope); ``GET`` on
``.../roles`` lists the roles granted there. The operations are generated here, one per
combination, from a handful of functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest, Handler
from cloud.identity.api import router
from cloud.identity.api._roles_common import (
    fetch_role,
    render_role,
    revoke_users,
    role_target,
    storable,
)
from cloud.identity.api.common import collection_links, enforce, identity, not_found
from cloud.store.conn import DbConnection
from schemas.identity import RoleGranted, RoleRevoked


@dataclass(frozen=True)
class Kind:
    """Which grants one family of URLs addresses."""

    target: str  # project | domain | system
    actor: str  # user | group
    inherited: bool = False

    @property
    def name(self) -> str:
        return ("inherited_" if self.inherited else "") + f"{self.target}_{self.actor}"

    @property
    def collection(self) -> str:
        """``.../roles`` of this family, with aiohttp path parameters."""
        actor = f"{self.actor}s/{{{self.actor}_id}}/roles"
        if self.target == "system":
            return f"/system/{actor}"
        prefix = "/OS-INHERIT" if self.inherited else ""
        return f"{prefix}/{self.target}s/{{{self.target}_id}}/{actor}"

    @property
    def listing(self) -> str:
        """Where the roles granted are listed (the inherited ones end in ``inherited_to_projects``)."""
        return self.collection + ("/inherited_to_projects" if self.inherited else "")

    @property
    def member(self) -> str:
        tail = "/inherited_to_projects" if self.inherited else ""
        return f"{self.collection}/{{role_id}}{tail}"

    def rule(self, action: str) -> str:
        """The policy rule of ``action`` (create, revoke, check, list) on this family."""
        if self.target != "system":
            return f"identity:{action}_grant" if action != "list" else "identity:list_grants"
        if action == "list":
            return f"identity:list_system_grants_for_{self.actor}"
        return f"identity:{action}_system_grant_for_{self.actor}"


@dataclass
class Loaded:
    """The rows a grant URL names (None where they do not exist)."""

    kind: Kind
    actor_id: str
    target_id: str
    role_id: str | None
    actor: asyncpg.Record | None
    target: asyncpg.Record | None
    role: asyncpg.Record | None

    def policy_target(self) -> dict[str, Any]:
        t: dict[str, Any] = {}
        a = self.actor
        t[self.kind.actor] = {"id": a["id"], "domain_id": a["domain_id"]} if a else {}
        if self.kind.target == "project":
            p = self.target
            t["project"] = {"id": p["id"], "domain_id": p["domain_id"]} if p else {}
        elif self.kind.target == "domain":
            t["domain"] = {"id": self.target["id"]} if self.target else {}
        if self.role_id is not None:
            t["role"] = role_target(self.role)
        return t

    def key(self) -> tuple[str, str, str, str, str | None, bool]:
        k = self.kind
        return (k.actor, self.actor_id, k.target, self.target_id, self.role_id, k.inherited)


async def _load(conn: DbConnection, req: ApiRequest[Any], kind: Kind) -> Loaded:
    p = req.params
    actor_id = p[f"{kind.actor}_id"]
    target_id = "all" if kind.target == "system" else p[f"{kind.target}_id"]
    role_id = p.get("role_id")
    table = "id_users" if kind.actor == "user" else "id_groups"
    actor = target = None
    if storable(actor_id):  # a NUL in the URL names nothing
        actor = await conn.fetchrow(f"SELECT id, domain_id FROM {table} WHERE id = $1", actor_id)
    known = storable(target_id)
    if known and kind.target == "project":
        target = await conn.fetchrow(
            "SELECT id, domain_id FROM id_projects WHERE id = $1", target_id
        )
    elif known and kind.target == "domain":
        target = await conn.fetchrow("SELECT id FROM id_domains WHERE id = $1", target_id)
    role = await fetch_role(conn, role_id) if role_id is not None else None
    return Loaded(kind, actor_id, target_id, role_id, actor, target, role)


def _require(g: Loaded, *, actor: bool = True) -> None:
    """404 for the first thing the URL names that does not exist."""
    if g.role_id is not None and g.role is None:
        raise not_found("role", g.role_id)
    if g.kind.target != "system" and g.target is None:
        raise not_found(g.kind.target, g.target_id)
    if actor and g.actor is None:
        raise not_found(g.kind.actor, g.actor_id)


async def _prepare(req: ApiRequest[Any], kind: Kind, action: str, *, actor: bool = True) -> Loaded:
    async with identity(req).store.pool.acquire() as conn:
        g = await _load(conn, req, kind)
    enforce(req, kind.rule(action), g.policy_target())
    _require(g, actor=actor)
    return g


async def _exists(conn: DbConnection, g: Loaded) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT 1 FROM id_assignments WHERE actor_type = $1 AND actor_id = $2
           AND target_type = $3 AND target_id = $4 AND role_id = $5 AND inherited = $6""",
            *g.key(),
        )
    )


def _assignment_missing(g: Loaded) -> ApiError:
    return ApiError(
        404,
        f"Could not find role assignment with role: {g.role_id}, user or group: "
        f"{g.actor_id}, project, domain, or system: {g.target_id}.",
    )


def _attributes(g: Loaded) -> dict[str, Any]:
    return {
        f"{g.kind.actor}_id": g.actor_id,
        f"{g.kind.target}_id": g.target_id,
        "inherited": g.kind.inherited,
    }


def _check_role_fits(g: Loaded) -> None:
    """A domain-specific role is granted only inside its domain, never on the system."""
    assert g.role is not None
    role_domain = g.role["domain_id"]
    if role_domain is None:
        return
    if g.kind.target == "system":
        raise ApiError(
            400,
            f"Role {g.role_id} is a domain-specific role. Unable to use a "
            "domain-specific role in a system assignment.",
        )
    assert g.target is not None
    target_domain = g.target["domain_id"] if g.kind.target == "project" else g.target["id"]
    if target_domain != role_domain:
        raise ApiError(
            403,
            f"{g.kind.target.capitalize()} {g.target_id} must be in the same "
            f"domain as the role {g.role_id} being assigned.",
        )


async def grant(req: ApiRequest[Any], kind: Kind) -> None:
    g = await _prepare(req, kind, "create")
    _check_role_fits(g)
    async with identity(req).write() as uow:
        inserted = await uow.conn.fetchval(
            """INSERT INTO id_assignments
                   (actor_type, actor_id, target_type, target_id, role_id, inherited)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1""",
            *g.key(),
        )
        if inserted:
            assert g.role_id is not None
            await uow.emit(RoleGranted(resource_id=g.role_id, attributes=_attributes(g)))


async def check(req: ApiRequest[Any], kind: Kind) -> None:
    g = await _prepare(req, kind, "check")
    async with identity(req).store.pool.acquire() as conn:
        if not await _exists(conn, g):
            raise _assignment_missing(g)


def _revocation_scope(g: Loaded) -> dict[str, str]:
    """Which of the users' tokens the revoked grant could have fed."""
    if g.kind.target == "domain":
        return {"domain_id": g.target_id}  # domain tokens, and its projects' (inheritance)
    if g.kind.target == "project" and not g.kind.inherited:
        return {"project_id": g.target_id}
    return {}  # the system, or a project's whole subtree: every token of the user


async def revoke(req: ApiRequest[Any], kind: Kind) -> None:
    # A grant may outlive its user or group (deleted elsewhere): it can still be revoked.
    g = await _prepare(req, kind, "revoke", actor=False)
    if not storable(g.actor_id):
        raise _assignment_missing(g)
    async with identity(req).write() as uow:
        done = await uow.conn.execute(
            """DELETE FROM id_assignments WHERE actor_type = $1 AND actor_id = $2
               AND target_type = $3 AND target_id = $4 AND role_id = $5 AND inherited = $6""",
            *g.key(),
        )
        if done == "DELETE 0":
            raise _assignment_missing(g)
        if kind.actor == "user":
            users = [g.actor_id]
        else:
            rows = await uow.conn.fetch(
                "SELECT user_id FROM id_group_members WHERE group_id = $1 ORDER BY user_id",
                g.actor_id,
            )
            users = [r["user_id"] for r in rows]
        await revoke_users(req, uow, users, **_revocation_scope(g))
        assert g.role_id is not None
        await uow.emit(RoleRevoked(resource_id=g.role_id, attributes=_attributes(g)))


async def list_roles(req: ApiRequest[Any], kind: Kind) -> dict[str, Any]:
    g = await _prepare(req, kind, "list")
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT r.* FROM id_assignments a JOIN id_roles r ON r.id = a.role_id
               WHERE a.actor_type = $1 AND a.actor_id = $2 AND a.target_type = $3
                 AND a.target_id = $4 AND a.inherited = $5
               ORDER BY r.name, r.id""",
            kind.actor,
            g.actor_id,
            kind.target,
            g.target_id,
            kind.inherited,
        )
    return {"roles": [render_role(req, r) for r in rows], "links": collection_links(req)}


# -- registration -------------------------------------------------------------------------------


def _where(kind: Kind) -> str:
    scope = "the system" if kind.target == "system" else f"a {kind.target}"
    text = f"a {kind.actor} on {scope}"
    return text + (", inherited to its projects" if kind.inherited else "")


def _register(kind: Kind) -> None:
    def op(name: str, doc: str, fn: Any) -> Handler:
        async def handler(req: ApiRequest[Any]) -> Any:
            return await fn(req, kind)

        handler.__name__ = handler.__qualname__ = name
        handler.__doc__ = doc
        return handler

    where, n = _where(kind), kind.name
    router.put(kind.member, status=204, errors=(404,))(
        op(f"grant_{n}_role", f"Grant a role to {where}.", grant)
    )
    router.head(kind.member, status=204, errors=(404,))(
        op(f"check_{n}_role", f"Check that {where} holds a role (204).", check)
    )
    router.get(kind.member, status=204, errors=(404,))(
        op(f"get_{n}_role", f"Check that {where} holds a role (204, as HEAD).", check)
    )
    router.delete(kind.member, status=204, errors=(404,))(
        op(f"revoke_{n}_role", f"Revoke a role from {where}.", revoke)
    )
    if not (kind.inherited and kind.target == "project"):  # Keystone has no such list
        router.get(kind.listing, errors=(404,))(
            op(f"list_{n}_roles", f"List the roles granted to {where}.", list_roles)
        )


for _target in ("project", "domain", "system"):
    for _actor in ("user", "group"):
        _register(Kind(_target, _actor))
        if _target != "system":
            _register(Kind(_target, _actor, inherited=True))
