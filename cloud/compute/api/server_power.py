"""Power actions ``os-stop`` and ``os-start``: the API sets the task state and tells the host.

The host answers with ``compute.instance.power_changed``; the conductor records it. A durable
deadline reverts the task state if the host never answers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.compute.base import address_of
from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE
from cloud.compute.api.server_access import not_found, scope_of
from cloud.compute.api.server_actions import ServerAction, action
from cloud.conductor import states
from cloud.conductor.base import timer_key
from schemas.compute import CheckBuildDeadline, StartInstance, StopInstance

POWER_DEADLINE_S = 120.0


async def _power(
    req: ApiRequest[ServerAction],
    server_id: str,
    name: str,
    required: str,
    task: str,
    command: type[StopInstance] | type[StartInstance],
) -> None:
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await uow.conn.fetchrow(
            """SELECT vm_state, task_state, host FROM cmp_instances
               WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)
               FOR UPDATE""",
            server_id,
            scope_of(req),
        )
        if row is None:
            raise not_found(server_id)
        if row["vm_state"] != required or row["task_state"] is not None or not row["host"]:
            raise ApiError(
                409,
                f"Cannot '{name}' instance {server_id} while it is in vm_state {row['vm_state']}",
            )
        await uow.conn.execute(
            "UPDATE cmp_instances SET task_state = $2, updated_at = $3 WHERE id = $1",
            server_id,
            task,
            uow.clock.now(),
        )
        await uow.emit(command(instance_id=server_id), to=address_of(row["host"]))
        deadline = CheckBuildDeadline(instance_id=server_id, step=task, deadline_s=POWER_DEADLINE_S)
        await uow.schedule(
            deadline,
            at=uow.clock.now() + timedelta(seconds=POWER_DEADLINE_S),
            key=timer_key(server_id),
        )


@action("os-stop")
async def stop(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await _power(req, server_id, "stop", states.ACTIVE, states.POWERING_OFF, StopInstance)


@action("os-start")
async def start(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await _power(req, server_id, "start", states.STOPPED, states.POWERING_ON, StartInstance)
