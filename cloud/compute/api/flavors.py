"""``/flavors``: Nova's flavors (list, detail, show, create, describe, delete).

Bodies are validated as Nova's JSON schemas do (integers may come as digit strings, ``is_public``
as a lenient boolean). Admins see every flavor; other callers the public ones and the private ones
shared with their project (anything else is a 404). Views follow the microversion: ``description``
from 2.55, ``extra_specs`` embedded from 2.61, ``swap`` as ``0`` rather than ``""`` from 2.75.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.listing import next_url, parse_limit
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import COMPUTE, router
from cloud.compute.api.flavor_schema import check_description, invalid, parse_create
from cloud.compute.api.microversion import version
from cloud.compute.service import ComputeService
from cloud.store.conn import DbConnection
from schemas.compute_catalog import FlavorCreated, FlavorDeleted, FlavorUpdated

MAX_LIMIT = 1000
# Nova's sort keys -> our columns.
SORT_KEYS = {
    "flavorid": "id",
    "id": "id",
    "name": "name",
    "memory_mb": "ram",
    "vcpus": "vcpus",
    "root_gb": "disk",
    "ephemeral_gb": "ephemeral",
    "swap": "swap",
    "rxtx_factor": "rxtx_factor",
    "is_public": "is_public",
    "disabled": "disabled",
    "description": "description",
    "created_at": "created_at",
    "updated_at": "created_at",
    "vcpu_weight": "id",
}
Flavor = dict[str, Any]


class FlavorBody(BaseModel):
    """``{"flavor": {...}}`` (checked field by field, as Nova's schema does)."""

    model_config = ConfigDict(extra="forbid")
    flavor: Any


# -- shared helpers (also used by flavor_access and flavor_extra_specs) -----------------------


def service(req: ApiRequest[Any]) -> ComputeService:
    return req.app[COMPUTE]


def is_admin(req: ApiRequest[Any]) -> bool:
    return service(req).policy.allowed("context_is_admin", req.auth.creds)


def allowed(req: ApiRequest[Any], rule: str, target: Mapping[str, Any] | None = None) -> bool:
    target = target if target is not None else {"project_id": req.auth.project_id}
    return service(req).policy.allowed(rule, req.auth.creds, target)


def enforce(req: ApiRequest[Any], rule: str, target: Mapping[str, Any] | None = None) -> None:
    """403 in Nova's words unless the policy allows ``rule``."""
    if not allowed(req, rule, target):
        raise ApiError(403, f"Policy doesn't allow {rule} to be performed.")


def decode(row: asyncpg.Record) -> Flavor:
    flavor = dict(row)
    specs = flavor.get("extra_specs")
    flavor["extra_specs"] = json.loads(specs) if isinstance(specs, str) else dict(specs or {})
    return flavor


def attributes(flavor: Flavor) -> dict[str, Any]:
    """A flavor as events carry it."""
    return {k: v for k, v in flavor.items() if k not in ("created_at", "updated_at")}


async def find_flavor(
    req: ApiRequest[Any], conn: DbConnection, flavor_id: str, *, lock: bool = False
) -> Flavor:
    """The flavor in the URL if the caller may see it; 404 otherwise."""
    row = await conn.fetchrow(
        "SELECT * FROM cmp_flavors WHERE id = $1" + (" FOR UPDATE" if lock else ""), flavor_id
    )
    if row is None or not (
        row["is_public"] or is_admin(req) or await _shared(req, conn, flavor_id)
    ):
        raise ApiError(404, f"Flavor {flavor_id} could not be found.")
    return decode(row)


async def _shared(req: ApiRequest[Any], conn: DbConnection, flavor_id: str) -> bool:
    project = req.auth.project_id
    if project is None:
        return False
    found = await conn.fetchval(
        "SELECT 1 FROM cmp_flavor_access WHERE flavor_id = $1 AND project_id = $2",
        flavor_id,
        project,
    )
    return found is not None


def links(req: ApiRequest[Any], flavor_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": req.url(f"/flavors/{flavor_id}")},
        {"rel": "bookmark", "href": f"{req.base_url()}/compute/flavors/{flavor_id}"},
    ]


def view(req: ApiRequest[Any], flavor: Flavor, *, detail: bool = True) -> dict[str, Any]:
    """A flavor as Nova shows it at the request's microversion."""
    ver = version(req)
    out: dict[str, Any] = {"id": flavor["id"], "name": flavor["name"]}
    if detail:
        swap = flavor["swap"]
        out.update(
            {
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "swap": swap if swap or ver >= (2, 75) else "",
                "OS-FLV-EXT-DATA:ephemeral": flavor["ephemeral"],
                "OS-FLV-DISABLED:disabled": flavor["disabled"],
                "vcpus": flavor["vcpus"],
                "os-flavor-access:is_public": flavor["is_public"],
                "rxtx_factor": flavor["rxtx_factor"],
            }
        )
    out["links"] = links(req, flavor["id"])
    if ver >= (2, 55):
        out["description"] = flavor["description"]
    if detail and ver >= (2, 61) and allowed(req, policies.SPECS_INDEX):
        out["extra_specs"] = flavor["extra_specs"]
    return out


# -- operations ----------------------------------------------------------------------------


def _list_query(req: ApiRequest[Any]) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    project = req.auth.project_id
    if is_admin(req):
        raw = req.query.get("is_public")
        public: bool | None = True
        if raw is not None:
            public = None if raw.strip().lower() == "none" else _query_bool(raw)
    else:
        public = True
        conditions.append("NOT disabled")
    if public is not None:
        shared = ""
        if public and project is not None:
            shared = (
                " OR id IN (SELECT flavor_id FROM cmp_flavor_access"
                f" WHERE project_id = {param(project)})"
            )
        conditions.append(f"is_public = {param(public)}{shared}")
    for name, column in (("minRam", "ram"), ("minDisk", "disk")):
        raw_min = req.query.get(name)
        if raw_min is not None:
            try:
                bound = max(min(int(raw_min), 2**62), -(2**62))  # any int; no overflow
                conditions.append(f"{column} >= {param(bound)}::bigint")
            except ValueError:
                raise ApiError(400, f"Invalid {name} filter [{raw_min}]") from None
    where = ("WHERE " + " AND ".join(f"({c})" for c in conditions)) if conditions else ""
    return where, args


def _query_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise ApiError(400, f"Invalid is_public filter [{raw}]")


def _order(req: ApiRequest[Any]) -> str:
    key = req.query.get("sort_key") or "flavorid"
    direction = (req.query.get("sort_dir") or "asc").lower()
    if key not in SORT_KEYS:
        raise invalid("sort_key", key, f"{key!r} is not one of {sorted(SORT_KEYS)}")
    if direction not in ("asc", "desc"):
        raise invalid("sort_dir", direction, f"{direction!r} is not one of ['asc', 'desc']")
    return f"ORDER BY {SORT_KEYS[key]} {direction.upper()}, id {direction.upper()}"


async def _list(req: ApiRequest[Any], *, detail: bool) -> dict[str, Any]:
    limit = parse_limit(req.query, default=MAX_LIMIT, maximum=MAX_LIMIT)
    where, args = _list_query(req)
    async with service(req).store.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT * FROM cmp_flavors {where} {_order(req)}", *args)
    flavors = [decode(r) for r in rows]
    marker = req.query.get("marker")
    if marker is not None:
        ids = [f["id"] for f in flavors]
        if marker not in ids:
            raise ApiError(400, f"marker [{marker}] not found")
        flavors = flavors[ids.index(marker) + 1 :]
    page = flavors[:limit]
    out: dict[str, Any] = {"flavors": [view(req, f, detail=detail) for f in page]}
    if page and len(page) == limit:  # a full page: Nova links the next one
        path = "/flavors/detail" if detail else "/flavors"
        href = next_url(req.url(path), req.query, page[-1]["id"])
        out["flavors_links"] = [{"rel": "next", "href": href}]
    return out


@router.get("/flavors", query=("is_public", "minRam", "minDisk", "sort_key", "sort_dir"))
async def list_flavors(req: ApiRequest[Any]) -> dict[str, Any]:
    """The flavors the caller may use (ids, names, links)."""
    return await _list(req, detail=False)


@router.get("/flavors/detail", query=("is_public", "minRam", "minDisk", "sort_key", "sort_dir"))
async def list_flavors_detail(req: ApiRequest[Any]) -> dict[str, Any]:
    """The flavors the caller may use, in full."""
    return await _list(req, detail=True)


@router.get("/flavors/{flavor_id}")
async def show_flavor(req: ApiRequest[Any]) -> dict[str, Any]:
    """One flavor."""
    async with service(req).store.pool.acquire() as conn:
        flavor = await find_flavor(req, conn, req.params["flavor_id"])
    return {"flavor": view(req, flavor)}


@router.post("/flavors", body=FlavorBody, errors=(403, 409))
async def create_flavor(req: ApiRequest[FlavorBody]) -> dict[str, Any]:
    """Create a flavor (admin)."""
    enforce(req, policies.FLAVOR_CREATE)
    fields = parse_create(req.body.flavor, version(req))
    async with service(req).write() as uow:
        clash = await uow.conn.fetchrow(
            "SELECT id, name FROM cmp_flavors WHERE id = $1 OR name = $2",
            fields["id"],
            fields["name"],
        )
        if clash is not None and clash["name"] == fields["name"]:
            raise ApiError(409, f"Flavor with name {fields['name']} already exists.")
        if clash is not None:
            raise ApiError(409, f"Flavor with ID {fields['id']} already exists.")
        columns = list(fields)
        row = await uow.conn.fetchrow(
            f"INSERT INTO cmp_flavors ({', '.join(columns)})"
            f" VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))}) RETURNING *",
            *fields.values(),
        )
        assert row is not None
        flavor = decode(row)
        await uow.emit(FlavorCreated(flavor_id=flavor["id"], attributes=attributes(flavor)))
    return {"flavor": view(req, flavor)}


@router.put("/flavors/{flavor_id}", body=FlavorBody, errors=(403, 404))
async def update_flavor(req: ApiRequest[FlavorBody]) -> dict[str, Any]:
    """Change a flavor's description (2.55; admin)."""
    if version(req) < (2, 55):
        raise ApiError(404, "The resource could not be found.")
    enforce(req, policies.FLAVOR_UPDATE)
    body = req.body.flavor
    if not isinstance(body, dict) or set(body) != {"description"}:
        raise invalid("flavor", body, "'description' is the only and required property")
    description = check_description(body["description"])
    async with service(req).write() as uow:
        flavor = await find_flavor(req, uow.conn, req.params["flavor_id"], lock=True)
        await uow.conn.execute(
            "UPDATE cmp_flavors SET description = $2 WHERE id = $1", flavor["id"], description
        )
        flavor["description"] = description
        await uow.emit(
            FlavorUpdated(
                flavor_id=flavor["id"], attributes=attributes(flavor), changed=["description"]
            )
        )
    return {"flavor": view(req, flavor)}


@router.delete("/flavors/{flavor_id}", status=202, errors=(403, 404))
async def delete_flavor(req: ApiRequest[Any]) -> None:
    """Delete a flavor (admin); servers keep their copy of it."""
    enforce(req, policies.FLAVOR_DELETE)
    async with service(req).write() as uow:
        flavor = await find_flavor(req, uow.conn, req.params["flavor_id"], lock=True)
        await uow.conn.execute("DELETE FROM cmp_flavors WHERE id = $1", flavor["id"])
        await uow.emit(FlavorDeleted(flavor_id=flavor["id"], attributes=attributes(flavor)))
