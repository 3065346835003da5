"""``PUT /servers/{id}``: rename a server (Nova v2.1); the row and its event in one transaction."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE, router
from cloud.compute.api import server_store as store
from cloud.compute.api import server_views as views
from schemas.compute import InstanceUpdated


class ServerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=255)


class ServerUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: ServerUpdate


@router.put("/servers/{id}", body=ServerUpdateRequest, errors=(400, 404))
async def update_server(req: ApiRequest[ServerUpdateRequest]) -> dict[str, Any]:
    """Rename a server; the answer is the server as Nova's update view shows it."""
    server_id, spec = req.params["id"], req.body.server
    if "description" in spec.model_fields_set:
        raise ApiError(400, "Server descriptions are not supported yet.")
    admin = req.auth.has_role("admin")
    scope = None if admin else req.auth.project_id
    if not admin and scope is None:
        raise ApiError(403, "Compute requests need a project-scoped token.")
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await uow.conn.fetchrow(
            """SELECT project_id, name FROM cmp_instances
               WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)
               FOR UPDATE""",
            server_id,
            scope,
        )
        if row is None:
            raise ApiError(404, f"Instance {server_id} could not be found.")
        if spec.name is not None and spec.name != row["name"]:
            await uow.conn.execute(
                "UPDATE cmp_instances SET name = $2, updated_at = $3 WHERE id = $1",
                server_id,
                spec.name,
                uow.clock.now(),
            )
            await uow.emit(
                InstanceUpdated(instance_id=server_id, project_id=row["project_id"], name=spec.name)
            )
        current = await store.get(uow.conn, server_id, scope)
    return {"server": views.updated(req, current, admin=admin)}
