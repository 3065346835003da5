"""``/v3/users/{user_id}/application_credentials``: delegated, project-bound login secrets.

An application credential is minted by its user with a project-scoped token: it is bound to that
project and carries a subset of the token's roles (by default all of them, implied roles
included). Its secret is argon2-hashed and shown once, in the create response. A token issued
with an application credential may only create or delete application credentials (and EC2
credentials) if the credential is ``unrestricted``. Deleting one revokes every token issued with it
at once.

Access rules are validated and stored and shown as Keystone shows them, but not enforced: a token
issued with the credential is not limited to the listed paths. ``/users/{user_id}/access_rules``
is not served.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity import repo, revocations
from cloud.identity.api import router
from cloud.identity.api.common import (
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    self_link,
)
from cloud.identity.api.open_models import fetch_one
from cloud.identity.passwords import new_secret
from cloud.store.conn import DbConnection
from schemas.identity import ApplicationCredentialCreated, ApplicationCredentialDeleted

Name = Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"[\S]+")]
IdString = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9-]+$")]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppCredRoleRef(_Closed):
    """One role, by id or by name (a global role)."""

    id: IdString | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _one_of(self) -> AppCredRoleRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("a role is given by exactly one of id or name")
        return self


class AppCredAccessRule(BaseModel):
    id: IdString | None = None
    path: Annotated[StrictStr, Field(max_length=225, pattern=r"^/")] | None = None
    service: IdString | None = None
    method: Literal["DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"] | None = None


class AppCredFields(_Closed):
    id: StrictStr | None = None  # ignored: the server picks the id
    name: Name
    description: StrictStr | None = None
    secret: StrictStr | None = None
    expires_at: StrictStr | None = None
    project_id: StrictStr | None = None  # ignored: the token's project
    roles: list[AppCredRoleRef] | None = None
    unrestricted: StrictBool | None = None
    access_rules: list[AppCredAccessRule] | None = None
    system: StrictStr | None = None  # ignored: system application credentials are not supported


class AppCredCreate(_Closed):
    """``{"application_credential": {"name": ..., "roles": [...], ...}}``."""

    application_credential: AppCredFields


def _forbidden(action: str) -> ApiError:
    return ApiError(403, f"You are not authorized to perform the requested action: {action}")


async def restricted_app_cred(req: ApiRequest[Any], conn: DbConnection) -> bool:
    """Whether the caller's token was issued with a restricted application credential."""
    if req.auth.app_cred_id is None:
        return False
    unrestricted = await conn.fetchval(
        "SELECT unrestricted FROM id_app_credentials WHERE id = $1", req.auth.app_cred_id
    )
    return not unrestricted


async def forbid_restricted(req: ApiRequest[Any], conn: DbConnection, what: str) -> None:
    """403 when a restricted application credential's token tries to manage ``what``."""
    if await restricted_app_cred(req, conn):
        raise _forbidden(
            f"Using method 'application_credential' is not allowed for managing additional {what}."
        )


def _invalid(detail: str) -> ApiError:
    return ApiError(400, f"Invalid application credential: {detail}")


def _expiry(raw: str | None, now: datetime) -> datetime | None:
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        raise ApiError(
            400,
            "Timestamp not in expected format. The server could not comply with the request"
            " since it is either malformed or otherwise incorrect. The client is assumed to be in"
            " error.",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise ApiError(400, "The 'expires_at' must not be before now.")
    return when


_IMPLIED_CLOSURE = """
WITH RECURSIVE closure AS (
    SELECT unnest($1::text[]) AS id
    UNION
    SELECT i.implied_role_id FROM id_implied_roles i JOIN closure c ON i.prior_role_id = c.id
) SELECT id FROM closure
"""


async def _resolve_roles(
    req: ApiRequest[Any], conn: DbConnection, refs: list[AppCredRoleRef] | None, project_id: str
) -> list[str]:
    """The role ids to delegate: the token's roles, or ``refs`` with their implied roles."""
    token_roles = [r.id for r in req.auth.roles]
    if not refs:
        wanted = token_roles
    else:
        ids: list[str] = []
        for ref in refs:
            if ref.id is not None:
                ids.append(ref.id)
                continue
            role_id = await conn.fetchval(
                "SELECT id FROM id_roles WHERE name = $1 AND domain_id IS NULL", ref.name
            )
            if role_id is None:
                raise ApiError(404, f"Could not find role: {ref.name}.")
            ids.append(role_id)
        wanted = [r["id"] for r in await conn.fetch(_IMPLIED_CLOSURE, ids)]
        if any(role_id not in token_roles for role_id in wanted):
            raise _invalid("Cannot create an application credential with unassigned role")
    held = {
        r["id"] for r in await repo.effective_roles(conn, req.auth.user.id, "project", project_id)
    }
    for role_id in wanted:
        if role_id not in held:
            raise _invalid(
                f"Could not find role assignment with role: {role_id}, user or group:"
                f" {req.auth.user.id}, project, domain, or system: {project_id}."
            )
    return list(dict.fromkeys(wanted))


async def _role_views(conn: DbConnection, role_ids: set[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, name, domain_id FROM id_roles WHERE id = ANY($1::text[])", list(role_ids)
    )
    return {r["id"]: {"id": r["id"], "name": r["name"], "domain_id": r["domain_id"]} for r in rows}


def _view(
    req: ApiRequest[Any], r: asyncpg.Record, roles: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    expires = r["expires_at"]
    return {
        "id": r["id"],
        "name": r["name"],
        "description": r["description"],
        "project_id": r["project_id"],
        "roles": [roles[i] for i in r["roles"] if i in roles],
        "unrestricted": r["unrestricted"],
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%f") if expires else None,
        "access_rules": json.loads(r["access_rules"]),
        "links": self_link(req, f"/users/{r['user_id']}/application_credentials/{r['id']}"),
    }


@router.post(
    "/users/{user_id}/application_credentials", body=AppCredCreate, status=201, errors=(409,)
)
async def create_application_credential(req: ApiRequest[AppCredCreate]) -> dict[str, Any]:
    """Create an application credential for the caller on the token's project."""
    user_id, f = req.params["user_id"], req.body.application_credential
    enforce(req, "identity:create_application_credential", {"user_id": user_id})
    if req.auth.user.id != user_id:
        raise _forbidden("Cannot create an application credential for another user.")
    if req.auth.project is None:
        raise _invalid("application credentials are created with a project-scoped token.")
    project_id = req.auth.project.id
    ident = identity(req)
    expires_at = _expiry(f.expires_at, ident.clock.now())
    async with ident.store.pool.acquire() as conn:
        await forbid_restricted(req, conn, "application credentials")
        role_ids = await _resolve_roles(req, conn, f.roles, project_id)
    secret = f.secret or new_secret(64)
    secret_hash = await ident.hasher.hash(secret)
    rules = [
        r.model_dump(exclude_none=True) | {"id": r.id or uuid.uuid4().hex}
        for r in f.access_rules or []
    ]
    app_cred_id = uuid.uuid4().hex
    async with (
        conflict_on_duplicate("application_credential", f"name {f.name}"),
        ident.write() as uow,
    ):
        row = await fetch_one(
            uow.conn,
            """INSERT INTO id_app_credentials (id, name, user_id, project_id, secret_hash,
                   description, expires_at, unrestricted, roles, access_rules)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) RETURNING *""",
            app_cred_id,
            f.name,
            user_id,
            project_id,
            secret_hash,
            f.description,
            expires_at,
            bool(f.unrestricted),
            role_ids,
            json.dumps(rules),
        )
        view = _view(req, row, await _role_views(uow.conn, set(role_ids)))
        attributes = {k: v for k, v in view.items() if k != "links"} | {"user_id": user_id}
        await uow.emit(ApplicationCredentialCreated(resource_id=app_cred_id, attributes=attributes))
    return {"application_credential": view | {"secret": secret}}


@router.get("/users/{user_id}/application_credentials", query=(QueryParam("name"),))
async def list_application_credentials(req: ApiRequest[Any]) -> dict[str, Any]:
    """List a user's application credentials."""
    user_id = req.params["user_id"]
    enforce(req, "identity:list_application_credentials", {"user_id": user_id})
    where = Where().eq("user_id", user_id).eq("name", req.query.get("name"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_app_credentials {where.sql()} ORDER BY name", *where.args
        )
        roles = await _role_views(conn, {i for r in rows for i in r["roles"]})
    return {
        "application_credentials": [_view(req, r, roles) for r in rows],
        "links": collection_links(req),
    }


async def _owned(conn: DbConnection, user_id: str, app_cred_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM id_app_credentials WHERE id = $1 AND user_id = $2", app_cred_id, user_id
    )
    if row is None:
        raise ApiError(404, f"Could not find Application Credential: {app_cred_id}.")
    return row


@router.get("/users/{user_id}/application_credentials/{app_cred_id}")
async def get_application_credential(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show an application credential (never its secret)."""
    user_id = req.params["user_id"]
    enforce(req, "identity:get_application_credential", {"user_id": user_id})
    async with identity(req).store.pool.acquire() as conn:
        row = await _owned(conn, user_id, req.params["app_cred_id"])
        roles = await _role_views(conn, set(row["roles"]))
    return {"application_credential": _view(req, row, roles)}


@router.delete("/users/{user_id}/application_credentials/{app_cred_id}", status=204)
async def delete_application_credential(req: ApiRequest[Any]) -> None:
    """Delete an application credential and revoke the tokens issued with it."""
    user_id = req.params["user_id"]
    enforce(req, "identity:delete_application_credential", {"user_id": user_id})
    ident = identity(req)
    async with ident.write() as uow:
        await forbid_restricted(req, uow.conn, "application credentials")
        row = await _owned(uow.conn, user_id, req.params["app_cred_id"])
        await uow.conn.execute("DELETE FROM id_app_credentials WHERE id = $1", row["id"])
        await revocations.record(
            uow.conn,
            now=ident.clock.now(),
            keep_until=ident.keep_revocation_until(),
            app_cred_id=row["id"],
            user_id=user_id,
        )
        await uow.emit(ApplicationCredentialDeleted(resource_id=row["id"]))
