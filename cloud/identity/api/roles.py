"""``/v3/roles``: global and domain-specific roles, and the rules by which one role implies another.

A role with ``domain_id`` null is global; one with a domain id is domain-specific: it may be granted
only inside its domain and only ever matters through the global roles it implies. Deleting a role
takes its grants and implication rules with it and revokes, at once, the tokens of every user who
held it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity.api import router
from cloud.identity.api._roles_common import (
    RoleCreateBody,
    RoleUpdateBody,
    fetch_role,
    holders,
    load_json,
    query_text,
    render_role,
    revoke_users,
    role_target,
)
from cloud.identity.api.common import (
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    not_found,
    self_link,
)
from schemas.identity import (
    RoleCreated,
    RoleDeleted,
    RoleImplicationRemoved,
    RoleImplied,
    RoleRevoked,
    RoleUpdated,
)

# Keystone's ``[assignment] prohibited_implied_role``: no rule may make anyone an admin.
PROHIBITED_IMPLIED = frozenset({"admin"})
_RESERVED = frozenset({"id", "links"})


# -- roles --------------------------------------------------------------------------------------


def _enforce_on(req: ApiRequest[Any], action: str, row: asyncpg.Record | None) -> None:
    """``identity:<action>_role``, or ``_domain_role`` for a domain-specific role."""
    if row is not None and row["domain_id"] is not None:
        enforce(req, f"identity:{action}_domain_role", {"role": role_target(row)})
    else:
        enforce(req, f"identity:{action}_role", {"role": role_target(row)})


@router.get(
    "/roles",
    query=(
        QueryParam("name", description="Only the role of this name."),
        QueryParam("domain_id", description="The roles of this domain (default: global roles)."),
    ),
)
async def list_roles(req: ApiRequest[Any]) -> dict[str, Any]:
    """List roles: global ones, or with ``domain_id`` those of one domain."""
    domain_id = query_text(req, "domain_id")
    if domain_id is not None:
        enforce(req, "identity:list_domain_roles", {"domain_id": domain_id})
    else:
        enforce(req, "identity:list_roles")
    name = query_text(req, "name")
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT * FROM id_roles
               WHERE domain_id IS NOT DISTINCT FROM $1 AND ($2::text IS NULL OR name = $2)
               ORDER BY name, id""",
            domain_id,
            name,
        )
    return {"roles": [render_role(req, r) for r in rows], "links": collection_links(req)}


@router.post("/roles", body=RoleCreateBody, status=201, errors=(409,))
async def create_role(req: ApiRequest[RoleCreateBody]) -> dict[str, Any]:
    """Create a role (domain-specific when ``domain_id`` is given)."""
    body = req.body.role
    target = {"name": body.name, "domain_id": body.domain_id}
    if body.domain_id is not None:
        enforce(req, "identity:create_domain_role", {"role": target})
    else:
        enforce(req, "identity:create_role", {"role": target})
    extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _RESERVED}
    options = {
        k: v
        for k, v in (body.options.model_dump() if body.options else {}).items()
        if v is not None
    }
    role_id = uuid.uuid4().hex
    async with conflict_on_duplicate("role", f"name {body.name}"), identity(req).write() as uow:
        if body.domain_id is not None and not await uow.conn.fetchval(
            "SELECT 1 FROM id_domains WHERE id = $1", body.domain_id
        ):
            raise not_found("domain", body.domain_id)
        row = await uow.conn.fetchrow(
            """INSERT INTO id_roles (id, name, domain_id, description, options, extra)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb) RETURNING *""",
            role_id,
            body.name,
            body.domain_id,
            body.description,
            json.dumps(options),
            json.dumps(extra),
        )
        assert row is not None
        rendered = render_role(req, row)
        await uow.emit(RoleCreated(resource_id=role_id, attributes=_event_attrs(rendered)))
    return {"role": rendered}


def _event_attrs(rendered: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rendered.items() if k != "links"}


@router.get("/roles/{role_id}", errors=(404,))
async def get_role(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a role."""
    role_id = req.params["role_id"]
    async with identity(req).store.pool.acquire() as conn:
        row = await fetch_role(conn, role_id)
    _enforce_on(req, "get", row)
    if row is None:
        raise not_found("role", role_id)
    return {"role": render_role(req, row)}


@router.patch("/roles/{role_id}", body=RoleUpdateBody, errors=(404, 409))
async def update_role(req: ApiRequest[RoleUpdateBody]) -> dict[str, Any]:
    """Update a role's name, description, options or extra attributes."""
    role_id = req.params["role_id"]
    body = req.body.role
    changes = body.model_dump(exclude_unset=True, include={"name", "description", "domain_id"})
    extras = dict(body.model_extra or {})
    if not changes and not extras and body.options is None:
        raise ApiError(400, "Invalid input for field 'role': at least one attribute is required.")
    if "name" in changes and changes["name"] is None:
        raise ApiError(400, "Invalid input for field 'role.name': None is not of type 'string'.")
    if extras.get("id", role_id) != role_id:
        raise ApiError(400, "Cannot change the id of a role.")
    async with identity(req).store.pool.acquire() as conn:
        current = await fetch_role(conn, role_id)
    _enforce_on(req, "update", current)
    if current is None:
        raise not_found("role", role_id)
    if "domain_id" in changes and changes["domain_id"] != current["domain_id"]:
        raise ApiError(400, "Update of `domain_id` is not allowed.")
    options = load_json(current["options"])
    if options.get("immutable") and (changes or set(extras) - _RESERVED):
        raise ApiError(
            403, f"Unable to update immutable role {role_id}: unset its immutable option first."
        )
    for key, value in (body.options.model_dump(exclude_unset=True) if body.options else {}).items():
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    extra = load_json(current["extra"])
    extra.update({k: v for k, v in extras.items() if k not in _RESERVED})
    name = changes.get("name", current["name"])
    description = changes["description"] if "description" in changes else current["description"]
    async with conflict_on_duplicate("role", f"name {name}"), identity(req).write() as uow:
        row = await uow.conn.fetchrow(
            """UPDATE id_roles SET name = $2, description = $3, options = $4::jsonb,
                   extra = $5::jsonb WHERE id = $1 RETURNING *""",
            role_id,
            name,
            description,
            json.dumps(options),
            json.dumps(extra),
        )
        if row is None:
            raise not_found("role", role_id)
        rendered = render_role(req, row)
        await uow.emit(RoleUpdated(resource_id=role_id, attributes=_event_attrs(rendered)))
    return {"role": rendered}


@router.delete("/roles/{role_id}", status=204, errors=(404,))
async def delete_role(req: ApiRequest[Any]) -> None:
    """Delete a role, its grants and its implication rules; its holders' tokens are revoked."""
    role_id = req.params["role_id"]
    async with identity(req).store.pool.acquire() as conn:
        current = await fetch_role(conn, role_id)
    _enforce_on(req, "delete", current)
    if current is None:
        raise not_found("role", role_id)
    if load_json(current["options"]).get("immutable"):
        raise ApiError(
            403, f"Unable to delete immutable role {role_id}: unset its immutable option first."
        )
    async with identity(req).write() as uow:
        users = await holders(uow.conn, role_id)
        grants = await uow.conn.fetch(
            "DELETE FROM id_assignments WHERE role_id = $1 RETURNING *", role_id
        )
        rules = await uow.conn.fetch(
            """DELETE FROM id_implied_roles WHERE prior_role_id = $1 OR implied_role_id = $1
               RETURNING *""",
            role_id,
        )
        if await uow.conn.execute("DELETE FROM id_roles WHERE id = $1", role_id) == "DELETE 0":
            raise not_found("role", role_id)
        await revoke_users(req, uow, users)
        for g in grants:
            attributes = {
                f"{g['actor_type']}_id": g["actor_id"],
                f"{g['target_type']}_id": g["target_id"],
                "inherited": g["inherited"],
            }
            await uow.emit(RoleRevoked(resource_id=role_id, attributes=attributes))
        for r in rules:
            await uow.emit(
                RoleImplicationRemoved(
                    resource_id=r["prior_role_id"],
                    attributes={"implied_role_id": r["implied_role_id"]},
                )
            )
        await uow.emit(RoleDeleted(resource_id=role_id))


# -- implied roles ------------------------------------------------------------------------------


def _brief(req: ApiRequest[Any], row: asyncpg.Record) -> dict[str, Any]:
    """A prior or implied role inside a role inference: id, name and link."""
    return {"id": row["id"], "name": row["name"], "links": self_link(req, f"/roles/{row['id']}")}


async def _pair(req: ApiRequest[Any], rule: str) -> tuple[asyncpg.Record, asyncpg.Record, bool]:
    """Enforce ``rule`` on the two roles of the URL; 404 unless both exist. (prior, implied, rule?)"""
    prior_id, implied_id = req.params["prior_role_id"], req.params["implied_role_id"]
    async with identity(req).store.pool.acquire() as conn:
        prior = await fetch_role(conn, prior_id)
        implied = await fetch_role(conn, implied_id)
        exists = (
            prior is not None
            and implied is not None
            and bool(
                await conn.fetchval(
                    "SELECT 1 FROM id_implied_roles"
                    " WHERE prior_role_id = $1 AND implied_role_id = $2",
                    prior_id,
                    implied_id,
                )
            )
        )
    enforce(req, rule, {"prior_role": role_target(prior), "implied_role": role_target(implied)})
    if prior is None:
        raise not_found("role", prior_id)
    if implied is None:
        raise not_found("role", implied_id)
    return prior, implied, exists


def _inference(
    req: ApiRequest[Any], prior: asyncpg.Record, implied: asyncpg.Record
) -> dict[str, Any]:
    return {
        "role_inference": {"prior_role": _brief(req, prior), "implies": _brief(req, implied)},
        "links": self_link(req, f"/roles/{prior['id']}/implies/{implied['id']}"),
    }


def _rule_missing(prior: asyncpg.Record, implied: asyncpg.Record) -> ApiError:
    return ApiError(404, f"{prior['id']} does not imply {implied['id']}.")


@router.get("/roles/{prior_role_id}/implies", errors=(404,))
async def list_implied_roles(req: ApiRequest[Any]) -> dict[str, Any]:
    """List the roles a role implies (directly)."""
    prior_id = req.params["prior_role_id"]
    async with identity(req).store.pool.acquire() as conn:
        prior = await fetch_role(conn, prior_id)
        implied = await conn.fetch(
            """SELECT r.* FROM id_implied_roles i JOIN id_roles r ON r.id = i.implied_role_id
               WHERE i.prior_role_id = $1 ORDER BY r.name, r.id""",
            prior["id"] if prior else "",
        )
    enforce(req, "identity:list_implied_roles", {"prior_role": role_target(prior)})
    if prior is None:
        raise not_found("role", prior_id)
    return {
        "role_inference": {
            "prior_role": _brief(req, prior),
            "implies": [_brief(req, r) for r in implied],
        },
        "links": self_link(req, f"/roles/{prior_id}/implies"),
    }


@router.put("/roles/{prior_role_id}/implies/{implied_role_id}", status=201, errors=(404, 409))
async def create_implied_role(req: ApiRequest[Any]) -> dict[str, Any]:
    """Make one role imply another."""
    prior, implied, exists = await _pair(req, "identity:create_implied_role")
    if implied["name"] in PROHIBITED_IMPLIED:
        raise ApiError(403, f"{implied['id']} cannot be an implied roles.")
    if prior["domain_id"] is None and implied["domain_id"] is not None:
        raise ApiError(403, "Global role cannot imply a domain-specific role.")
    detail = f"prior_role_id {prior['id']} and implied_role_id {implied['id']}"
    if exists:
        raise ApiError(
            409,
            "Conflict occurred attempting to store implied_role - Duplicate "
            f"entry found with {detail}.",
        )
    async with conflict_on_duplicate("implied_role", detail), identity(req).write() as uow:
        await uow.conn.execute(
            "INSERT INTO id_implied_roles (prior_role_id, implied_role_id) VALUES ($1, $2)",
            prior["id"],
            implied["id"],
        )
        await uow.emit(
            RoleImplied(resource_id=prior["id"], attributes={"implied_role_id": implied["id"]})
        )
    return _inference(req, prior, implied)


@router.get("/roles/{prior_role_id}/implies/{implied_role_id}", errors=(404,))
async def get_implied_role(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a role inference rule."""
    prior, implied, exists = await _pair(req, "identity:get_implied_role")
    if not exists:
        raise _rule_missing(prior, implied)
    return _inference(req, prior, implied)


@router.head("/roles/{prior_role_id}/implies/{implied_role_id}", status=204, errors=(404,))
async def check_implied_role(req: ApiRequest[Any]) -> None:
    """Check that a role implies another (204)."""
    prior, implied, exists = await _pair(req, "identity:check_implied_role")
    if not exists:
        raise _rule_missing(prior, implied)


@router.delete("/roles/{prior_role_id}/implies/{implied_role_id}", status=204, errors=(404,))
async def delete_implied_role(req: ApiRequest[Any]) -> None:
    """Remove a role inference rule (neither role is deleted)."""
    prior, implied, _ = await _pair(req, "identity:delete_implied_role")
    async with identity(req).write() as uow:
        done = await uow.conn.execute(
            "DELETE FROM id_implied_roles WHERE prior_role_id = $1 AND implied_role_id = $2",
            prior["id"],
            implied["id"],
        )
        if done == "DELETE 0":
            raise _rule_missing(prior, implied)
        await uow.emit(
            RoleImplicationRemoved(
                resource_id=prior["id"], attributes={"implied_role_id": implied["id"]}
            )
        )


@router.get("/role_inferences")
async def list_role_inferences(req: ApiRequest[Any]) -> dict[str, Any]:
    """List every role inference rule, grouped by prior role."""
    enforce(req, "identity:list_role_inference_rules")
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT p.id AS p_id, p.name AS p_name, r.id AS i_id, r.name AS i_name
               FROM id_implied_roles i
               JOIN id_roles p ON p.id = i.prior_role_id
               JOIN id_roles r ON r.id = i.implied_role_id
               ORDER BY p.name, p.id, r.name, r.id"""
        )
    rules: dict[str, dict[str, Any]] = {}
    for r in rows:
        rule = rules.setdefault(
            r["p_id"],
            {
                "prior_role": {
                    "id": r["p_id"],
                    "name": r["p_name"],
                    "links": self_link(req, f"/roles/{r['p_id']}"),
                },
                "implies": [],
            },
        )
        rule["implies"].append(
            {"id": r["i_id"], "name": r["i_name"], "links": self_link(req, f"/roles/{r['i_id']}")}
        )
    return {"role_inferences": list(rules.values()), "links": self_link(req, "/role_inferences")}
