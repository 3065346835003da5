"""``PUT /servers/{id}``: rename a server, set its description (2.19) or hostname (2.90).

Each changed attribute is written with its event in one transaction. Like Nova, an update is not
refused by a lock.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import boot_policy
from cloud.compute.api import COMPUTE, router
from cloud.compute.api import server_boot as boot
from cloud.compute.api import server_store as store
from cloud.compute.api import server_views as views
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import is_admin, locked_server, scope_of
from schemas.compute import InstanceUpdated
from schemas.compute_servers import InstanceDescriptionChanged, InstanceHostnameChanged


class ServerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    hostname: str | None = None


class ServerUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: ServerUpdate


def _check(spec: ServerUpdate, ver: tuple[int, int]) -> None:
    given = spec.model_fields_set
    for name in ("description", "hostname"):
        if name in given and ver < boot.FIELD_SINCE[name]:
            raise ApiError(
                400,
                "Invalid input for field/attribute server. Value: ... Additional properties are "
                f"not allowed ('{name}' was unexpected)",
            )
    if "name" in given and spec.name is None:
        raise ApiError(400, "Invalid input for field/attribute name. Value: None.")
    if spec.description is not None:
        boot.check_description(spec.description)
    if "hostname" in given:
        boot.check_hostname(spec.hostname)


@router.put("/servers/{id}", body=ServerUpdateRequest, errors=(400, 404))
async def update_server(req: ApiRequest[ServerUpdateRequest]) -> dict[str, Any]:
    """Change a server's name, description or hostname; answers with Nova's update view."""
    server_id, spec = req.params["id"], req.body.server
    _check(spec, version(req))
    given, scope = spec.model_fields_set, scope_of(req)
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await locked_server(
            uow.conn, server_id, scope, "project_id, name, description, hostname"
        )
        project, now = row["project_id"], uow.clock.now()
        if spec.name is not None and spec.name != row["name"]:
            await uow.conn.execute(
                "UPDATE cmp_instances SET name = $2, updated_at = $3 WHERE id = $1",
                server_id,
                spec.name,
                now,
            )
            await uow.emit(
                InstanceUpdated(instance_id=server_id, project_id=project, name=spec.name)
            )
        if "description" in given and spec.description != row["description"]:
            await uow.conn.execute(
                "UPDATE cmp_instances SET description = $2, updated_at = $3 WHERE id = $1",
                server_id,
                spec.description,
                now,
            )
            await uow.emit(
                InstanceDescriptionChanged(
                    instance_id=server_id, project_id=project, description=spec.description
                )
            )
        if spec.hostname is not None and spec.hostname != row["hostname"]:
            await uow.conn.execute(
                "UPDATE cmp_instances SET hostname = $2, updated_at = $3 WHERE id = $1",
                server_id,
                spec.hostname,
                now,
            )
            await uow.emit(
                InstanceHostnameChanged(
                    instance_id=server_id, project_id=project, hostname=spec.hostname
                )
            )
        current = await store.get(uow.conn, server_id, scope)
        server = views.updated(req, current, admin=is_admin(req))
        if "server_groups" in server:
            server["server_groups"] = await boot_policy.server_groups_of(uow.conn, server_id)
    return {"server": server}
