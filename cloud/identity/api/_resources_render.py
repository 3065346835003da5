"""Shared by the domain, project, user and group modules: body types, extras, rendering, scoping.

Domains, projects, users and groups keep attributes Keystone does not know about (``email``,
``--property k=v``) in their ``extra`` jsonb column and show them merged into the resource. Domain
and project ``tags``/``options`` live there too (the tables have no column for them), under keys the
renderer puts back in place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Self

import asyncpg
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from cloud.api.errors import ApiError
from cloud.api.listing import Where, parse_bool
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity.api.common import enforce, identity, self_link
from cloud.identity.repo import DEFAULT_DOMAIN_ID
from cloud.store.conn import DbConnection

# A stored row: an asyncpg record (not a ``Mapping`` to the type checker) or a plain dict.
Row = asyncpg.Record | Mapping[str, Any]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain a non-blank character")
    return value


# Keystone: resource (domain, project) names are 1-64 characters, identity (user, group) 1-255;
# both need one non-blank character. Ids are ``^[a-zA-Z0-9-]+$``, at most 64.
ResourceName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=64), AfterValidator(_not_blank)
]
IdentityName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255), AfterValidator(_not_blank)
]
IdString = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9-]+$")
]
Tag = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255, pattern=r"^[^,/]*$")
]
TagList = Annotated[list[Tag], Field(max_length=80)]


def unique_tags(tags: list[str]) -> list[str]:
    if len(set(tags)) != len(tags):
        raise ApiError(400, "Invalid input for field 'tags': the tags must be unique.")
    return tags


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Strict(BaseModel):
    """JSON types as written (``"true"`` is no boolean), unknown fields refused, no NUL chars."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        if _has_nul(self.model_dump()) or _has_nul(self.model_extra or {}):
            raise ValueError("strings must not contain NUL characters")
        return self


class WithExtras(Strict):
    """A Keystone resource body that keeps unknown attributes (``additionalProperties: true``)."""

    model_config = ConfigDict(strict=True, extra="allow")

    def extras(self) -> dict[str, Any]:
        """The attributes this model does not declare (ids and links in a body are ignored)."""
        return {k: v for k, v in (self.model_extra or {}).items() if k not in ("id", "links")}

    def given(self, name: str) -> bool:
        return name in self.model_fields_set

    def require_some(self, what: str) -> None:
        """400 for an update without a single attribute (Keystone's ``minProperties: 1``)."""
        if not self.model_fields_set and not self.model_extra:
            raise ApiError(400, f"Invalid input for field '{what}': it has no properties.")


class ResourceOptions(Strict):
    """Domain and project options: only ``immutable`` (null removes it)."""

    immutable: StrictBool | None = None


def check_id_unchanged(body: WithExtras, current: str) -> None:
    """Keystone refuses a body ``id`` other than the resource's own."""
    given = (body.model_extra or {}).get("id")
    if given is not None and given != current:
        raise ApiError(400, "Cannot change ID.")


def merge_options(current: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Options are merged key by key; a null value removes the option."""
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def assert_mutable(kind: str, resource_id: str, options: Mapping[str, Any], change: Any) -> None:
    """403 for changes to an ``immutable`` resource, unless ``change`` turns that option off."""
    if not options.get("immutable"):
        return
    if isinstance(change, Mapping) and change.get("immutable") is False:
        return
    raise ApiError(
        403, f"{kind.capitalize()} {resource_id} is immutable: unset its immutable option first."
    )


# -- rows <-> API ------------------------------------------------------------------------------


def load_json(raw: Any) -> dict[str, Any]:
    """A jsonb object column's value (asyncpg hands jsonb over as text)."""
    value = json.loads(raw) if isinstance(raw, str) else raw
    return dict(value or {})


def load_extra(row: Row) -> dict[str, Any]:
    return load_json(row["extra"])


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _with_links(req: ApiRequest[Any] | None, body: dict[str, Any], path: str) -> dict[str, Any]:
    if req is not None:
        body["links"] = self_link(req, path)
    return body


def render_domain(row: Row, req: ApiRequest[Any] | None = None) -> dict[str, Any]:
    """A domain as Keystone shows it (without links when ``req`` is None: event attributes)."""
    extra = load_extra(row)
    tags, options = extra.pop("tags", []), extra.pop("options", {})
    body = {
        **extra,
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "enabled": row["enabled"],
        "tags": tags,
        "options": options,
    }
    return _with_links(req, body, f"/domains/{row['id']}")


def render_project(row: Row, req: ApiRequest[Any] | None = None) -> dict[str, Any]:
    """A project; a top-level one shows its domain as ``parent_id``, as in Keystone."""
    extra = load_extra(row)
    options = extra.pop("options", {})
    body = {
        **extra,
        "id": row["id"],
        "name": row["name"],
        "domain_id": row["domain_id"],
        "description": row["description"],
        "enabled": row["enabled"],
        "parent_id": row["parent_id"] or row["domain_id"],
        "is_domain": False,
        "tags": list(row["tags"]),
        "options": options,
    }
    return _with_links(req, body, f"/projects/{row['id']}")


def render_domain_as_project(row: Row, req: ApiRequest[Any] | None = None) -> dict[str, Any]:
    """A domain in a project listing (``is_domain=true``), as Keystone stores domains."""
    extra = load_extra(row)
    tags, options = extra.pop("tags", []), extra.pop("options", {})
    body = {
        **extra,
        "id": row["id"],
        "name": row["name"],
        "domain_id": None,
        "description": row["description"],
        "enabled": row["enabled"],
        "parent_id": None,
        "is_domain": True,
        "tags": tags,
        "options": options,
    }
    return _with_links(req, body, f"/projects/{row['id']}")


def render_user(row: Row, req: ApiRequest[Any] | None = None) -> dict[str, Any]:
    """A user: never its password or hash."""
    extra = load_extra(row)
    for secret in ("password", "password_hash", "original_password"):
        extra.pop(secret, None)
    options = load_json(row["options"])
    body: dict[str, Any] = {
        **extra,
        "id": row["id"],
        "name": row["name"],
        "domain_id": row["domain_id"],
        "enabled": row["enabled"],
        "password_expires_at": None,
        "options": options,
    }
    if row["default_project_id"] is not None:
        body["default_project_id"] = row["default_project_id"]
    if row["description"] is not None:
        body["description"] = row["description"]
    return _with_links(req, body, f"/users/{row['id']}")


def render_group(row: Row, req: ApiRequest[Any] | None = None) -> dict[str, Any]:
    body = {
        **load_extra(row),
        "id": row["id"],
        "name": row["name"],
        "domain_id": row["domain_id"],
        "description": row["description"],
    }
    return _with_links(req, body, f"/groups/{row['id']}")


# -- callers, scoping and input ----------------------------------------------------------------


def caller_domain(req: ApiRequest[Any]) -> str:
    """Where a new resource goes when the body names no domain: the caller's domain scope, its
    project's domain, else ``default`` (Keystone's ``_normalize_domain_id``)."""
    auth = req.auth
    if auth.domain is not None:
        return auth.domain.id
    if auth.project is not None and auth.project.domain_id:
        return auth.project.domain_id
    return DEFAULT_DOMAIN_ID


def list_scope(
    req: ApiRequest[Any], rule: str, where: Where, column: str, wanted: str | None
) -> None:
    """Enforce a collection ``rule`` and restrict ``where`` to the domains the caller may list:
    ``wanted`` (the ``domain_id`` filter) and, for a domain-scoped caller, its own domain."""
    own = req.auth.domain.id if req.auth.domain is not None else None
    domain = wanted if wanted is not None else own
    enforce(req, rule, {"domain_id": domain} if domain is not None else {})
    where.eq(column, wanted)
    if own is not None:
        where.eq(column, own)


def query_text(req: ApiRequest[Any], name: str) -> str | None:
    """A query parameter as text; one with a NUL character matches nothing PostgreSQL can store."""
    value = req.query.get(name)
    if value is not None and "\x00" in value:
        raise ApiError(400, f"Invalid value for query parameter {name!r}.")
    return value


def query_bool(req: ApiRequest[Any], name: str) -> bool | None:
    value = req.query.get(name)
    return None if value is None else parse_bool(value, name)


def path_id(req: ApiRequest[Any], name: str, kind: str) -> str:
    """A path parameter; one PostgreSQL cannot even compare (NUL) names nothing: 404."""
    value = req.params[name]
    if "\x00" in value:
        raise ApiError(404, f"Could not find {kind}: {value!r}.")
    return value


FILTER_NAME = QueryParam("name", description="Only the resources with this exact name.")
FILTER_DOMAIN = QueryParam("domain_id", description="Only the resources of this domain.")
FILTER_ENABLED = QueryParam(
    "enabled", {"type": "boolean"}, "Only enabled (true) or disabled (false) resources."
)


# -- lookups -------------------------------------------------------------------------------------


async def fetch_domain(conn: DbConnection, domain_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM id_domains WHERE id = $1", domain_id)


async def fetch_project(conn: DbConnection, project_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM id_projects WHERE id = $1", project_id)


async def fetch_user(conn: DbConnection, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM id_users WHERE id = $1", user_id)


async def fetch_group(conn: DbConnection, group_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM id_groups WHERE id = $1", group_id)


_TABLES = {
    "domain": "id_domains",
    "project": "id_projects",
    "user": "id_users",
    "group": "id_groups",
}


def target_of(kind: str, row: Row) -> dict[str, Any]:
    """The policy target of a stored resource: ``{"project": {"id": ..., "domain_id": ...}}``."""
    if kind == "domain":
        return {"domain": {"id": row["id"]}}
    return {kind: {"id": row["id"], "domain_id": row["domain_id"]}}


async def load_for(req: ApiRequest[Any], rule: str, kind: str, resource_id: str) -> asyncpg.Record:
    """The stored ``kind`` once ``rule`` allows the caller on it. A missing one is checked with an
    empty target first, so a caller who may not see it gets 403 whether or not it exists."""
    async with identity(req).store.pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT * FROM {_TABLES[kind]} WHERE id = $1", resource_id)
    enforce(req, rule, {} if row is None else target_of(kind, row))
    if row is None:
        raise ApiError(404, f"Could not find {kind}: {resource_id}.")
    return row


def reject_nulls(body: BaseModel, *fields: str) -> None:
    """Keystone's schemas do not let these fields be null even where absence is fine."""
    for name in fields:
        if name in body.model_fields_set and getattr(body, name) is None:
            raise ApiError(400, f"Invalid input for field '{name}': None is not a valid value.")


async def require_domain(conn: DbConnection, domain_id: str) -> asyncpg.Record:
    """The domain a new resource is put in; a missing one is a bad request (Keystone: 400)."""
    row = await fetch_domain(conn, domain_id)
    if row is None:
        raise ApiError(400, f"Could not find domain: {domain_id}.")
    return row
