"""Shared by the role, grant and role-assignment modules: role rendering, lookups, revocation."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Self

import asyncpg
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictStr,
    StringConstraints,
    model_validator,
)

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.identity import revocations
from cloud.identity.api.common import identity, self_link
from cloud.store.conn import DbConnection
from cloud.store.writes import UnitOfWork


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain a non-blank character")
    return value


# Keystone: a role name is 1-255 characters with one non-blank; a domain id at most 64.
RoleName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255), AfterValidator(_not_blank)
]
DomainId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]


def storable(value: Any) -> bool:
    """Whether PostgreSQL can store ``value``: no NUL character, no infinite or NaN number."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(storable(v) for v in value)
    return True


def query_text(req: ApiRequest[Any], name: str) -> str | None:
    """A query parameter (an empty one is absent); 400 for one PostgreSQL cannot compare (NUL)."""
    value = req.query.get(name) or None
    if value is not None and not storable(value):
        raise ApiError(400, f"Invalid value for query parameter {name!r}.")
    return value


class RoleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    immutable: StrictBool | None = None


class _RoleFields(BaseModel):
    """A role as a request carries it; unknown attributes are kept, as Keystone keeps them."""

    model_config = ConfigDict(extra="allow")

    description: StrictStr | None = None
    domain_id: DomainId | None = None
    options: RoleOptions | None = None

    @model_validator(mode="after")
    def _storable(self) -> Self:
        if not storable(self.model_dump()):
            raise ValueError("strings must not contain NUL characters, numbers must be finite")
        return self


class RoleCreate(_RoleFields):
    name: RoleName


class RoleUpdate(_RoleFields):
    name: RoleName | None = None


class RoleCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleCreate


class RoleUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleUpdate


def load_json(value: Any) -> dict[str, Any]:
    """A jsonb column as a dict (asyncpg hands jsonb over as text)."""
    if value is None:
        return {}
    return dict(json.loads(value)) if isinstance(value, str) else dict(value)


def render_role(req: ApiRequest[Any], row: asyncpg.Record) -> dict[str, Any]:
    """A role as Keystone shows it: extra attributes flattened in, then the known ones."""
    return {
        **load_json(row["extra"]),
        "id": row["id"],
        "name": row["name"],
        "domain_id": row["domain_id"],
        "description": row["description"],
        "options": load_json(row["options"]),
        "links": self_link(req, f"/roles/{row['id']}"),
    }


def role_target(row: asyncpg.Record | None) -> dict[str, Any]:
    """``target.role`` for the policy: empty when the role does not exist."""
    if row is None:
        return {}
    return {"id": row["id"], "name": row["name"], "domain_id": row["domain_id"]}


async def fetch_role(conn: DbConnection, role_id: str) -> asyncpg.Record | None:
    if not storable(role_id):  # a NUL in the URL names nothing
        return None
    return await conn.fetchrow("SELECT * FROM id_roles WHERE id = $1", role_id)


async def holders(conn: DbConnection, role_id: str) -> list[str]:
    """Every user holding ``role_id`` anywhere, directly or through a group."""
    rows = await conn.fetch(
        """SELECT actor_id AS user_id FROM id_assignments
           WHERE role_id = $1 AND actor_type = 'user'
           UNION
           SELECT m.user_id FROM id_assignments a
           JOIN id_group_members m ON m.group_id = a.actor_id
           WHERE a.role_id = $1 AND a.actor_type = 'group'""",
        role_id,
    )
    return sorted(r["user_id"] for r in rows)


async def revoke_users(
    req: ApiRequest[Any], uow: UnitOfWork, user_ids: list[str], **scope: str
) -> None:
    """Kill, at once, the tokens ``user_ids`` hold (only those on ``scope``, when given)."""
    ident = identity(req)
    now, keep = ident.clock.now(), ident.keep_revocation_until()
    for user_id in user_ids:
        await revocations.record(uow.conn, now=now, keep_until=keep, user_id=user_id, **scope)
