"""``/flavors/{id}/os-flavor-access`` and the ``addTenantAccess``/``removeTenantAccess`` actions.

A private flavor is usable by the projects on its access list (and by admins); public flavors
show no list, and from 2.7 refuse additions (409). Only admins read or change the lists (Nova's defaults).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavor_schema import invalid
from cloud.compute.api.flavors import enforce, find_flavor, service
from cloud.compute.api.microversion import version
from cloud.store.conn import DbConnection
from schemas.compute_catalog import FlavorAccessAdded, FlavorAccessRemoved


class FlavorAction(BaseModel):
    """``{"addTenantAccess": {"tenant": "<project id>"}}`` or ``removeTenantAccess``."""

    model_config = ConfigDict(extra="forbid")
    addTenantAccess: Any = None
    removeTenantAccess: Any = None


async def _access_list(conn: DbConnection, flavor_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT project_id FROM cmp_flavor_access WHERE flavor_id = $1 ORDER BY project_id",
        flavor_id,
    )
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": r["project_id"]} for r in rows]}


@router.get("/flavors/{flavor_id}/os-flavor-access", errors=(403, 404))
async def list_flavor_access(req: ApiRequest[Any]) -> dict[str, Any]:
    """The projects that may use a private flavor (admin)."""
    enforce(req, policies.ACCESS_LIST)
    async with service(req).store.pool.acquire() as conn:
        flavor = await find_flavor(req, conn, req.params["flavor_id"])
        if flavor["is_public"]:
            raise ApiError(404, "Access list not available for public flavors.")
        return await _access_list(conn, flavor["id"])


def _tenant(action: str, value: Any) -> str:
    if not isinstance(value, dict) or set(value) != {"tenant"}:
        raise invalid(action, value, "'tenant' is the only and required property")
    tenant = value["tenant"]
    if not isinstance(tenant, str) or not 1 <= len(tenant) <= 255:
        raise invalid("tenant", tenant, f"{tenant!r} is not a valid project id")
    return tenant


@router.post("/flavors/{flavor_id}/action", body=FlavorAction, errors=(403, 404, 409))
async def flavor_action(req: ApiRequest[FlavorAction]) -> dict[str, Any]:
    """Add a project to, or remove it from, a private flavor's access list (admin)."""
    body = req.body
    given = [n for n in ("addTenantAccess", "removeTenantAccess") if n in body.model_fields_set]
    if len(given) != 1:
        raise ApiError(400, "There is no such action: one of addTenantAccess, removeTenantAccess.")
    adding = given[0] == "addTenantAccess"
    tenant = _tenant(given[0], getattr(body, given[0]))
    enforce(req, policies.ACCESS_ADD if adding else policies.ACCESS_REMOVE)
    async with service(req).write() as uow:
        flavor = await find_flavor(req, uow.conn, req.params["flavor_id"], lock=True)
        fid = flavor["id"]
        if adding:
            if flavor["is_public"] and version(req) >= (2, 7):  # before 2.7 it was allowed
                raise ApiError(409, "Can not add access to a public flavor.")
            if not await uow.conn.fetchval("SELECT 1 FROM id_projects WHERE id = $1", tenant):
                raise ApiError(400, f"Project ID {tenant} is not a valid project.")
            status = await uow.conn.execute(
                "INSERT INTO cmp_flavor_access (flavor_id, project_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                fid,
                tenant,
            )
            if status.endswith(" 0"):
                raise ApiError(
                    409,
                    f"Flavor access already exists for flavor {fid} and project {tenant} "
                    "combination.",
                )
            await uow.emit(FlavorAccessAdded(flavor_id=fid, project_id=tenant))
        else:
            status = await uow.conn.execute(
                "DELETE FROM cmp_flavor_access WHERE flavor_id = $1 AND project_id = $2",
                fid,
                tenant,
            )
            if status.endswith(" 0"):
                raise ApiError(404, f"Flavor access not found for {fid} / {tenant} combination.")
            await uow.emit(FlavorAccessRemoved(flavor_id=fid, project_id=tenant))
        return await _access_list(uow.conn, fid)
