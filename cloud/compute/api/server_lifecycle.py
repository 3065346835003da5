"""Operations on an existing server, and the actions reboot, pause/unpause and suspend/resume.

Every operation (these, ``os-stop``/``os-start``, resize and its confirm/revert, rebuild) runs the
same way, in one transaction: lock the row, check its vm_state/task_state as Nova's
``check_instance_state`` does (409 otherwise), record the instance action (the request id becomes
the correlation id of everything that follows), set the task state, send
``compute.operate_instance`` to the host and arm the step's deadline (timer ``build:<id>``). The
host's answer is recorded by :mod:`cloud.conductor.operations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agents.compute.base import address_of
from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import action_log
from cloud.compute.api import COMPUTE
from cloud.compute.api.server_access import locked_server, scope_of
from cloud.compute.api.server_actions import ServerAction, action
from cloud.conductor import states
from cloud.conductor.base import timer_key
from cloud.config import Settings
from cloud.store.writes import UnitOfWork
from schemas.compute import CheckBuildDeadline
from schemas.compute_ops import OperateInstance

_COLUMNS = """id, project_id, user_id, name, vm_state, task_state, power_state, host, image_ref,
    flavor::text AS flavor, flavor_id, user_data, metadata::text AS metadata"""


@dataclass(frozen=True)
class Caller:
    """Who asked: the request id (the action's id) and the user, as the action log shows them."""

    request_id: str
    project_id: str | None = None
    user_id: str | None = None

    @classmethod
    def of(cls, req: ApiRequest[Any]) -> Caller:
        auth = req.auth
        return cls(
            action_log.request_id_of(req),
            auth.project.id if auth.project else None,
            auth.user.id,
        )


async def lock_server(uow: UnitOfWork, server_id: str, scope: str | None) -> dict[str, Any]:
    """The live server's row, locked for this transaction; 404 when the caller cannot see it."""
    return dict(await locked_server(uow.conn, server_id, scope, _COLUMNS))


def method_of(kind: states.OperationKind) -> str:
    """The name Nova's messages give the operation (its compute API method)."""
    return "reboot" if kind.action == "reboot" else kind.operation


def check_state(row: dict[str, Any], kind: states.OperationKind) -> None:
    """Nova's ``check_instance_state``: 409 unless vm_state and task_state allow ``kind``."""
    server_id, method = row["id"], method_of(kind)
    if row["vm_state"] not in kind.vm_states or not row["host"]:
        raise ApiError(
            409,
            f"Cannot '{method}' instance {server_id} while it is in vm_state {row['vm_state']}",
        )
    if row["task_state"] not in kind.task_states:
        raise ApiError(
            409,
            f"Cannot '{method}' instance {server_id} while it is in task_state {row['task_state']}",
        )


def deadline_for(settings: Settings, kind: states.OperationKind) -> float:
    """Seconds the host has to report the operation's outcome."""
    if kind.operation in ("stop", "start"):
        return settings.conductor_power_deadline_s
    if kind.operation == "resize":
        return settings.compute_resize_deadline_s
    if kind.operation == "rebuild":
        return settings.compute_rebuild_deadline_s
    return settings.compute_operation_deadline_s


async def begin(
    uow: UnitOfWork,
    row: dict[str, Any],
    kind: states.OperationKind,
    caller: Caller,
    deadline_s: float,
    *,
    host: str | None = None,
    **command: Any,
) -> None:
    """Record the action, set the task state, tell ``host`` (default: the instance's), arm the
    deadline. ``command``: the extra fields of :class:`OperateInstance`."""
    server_id, target = row["id"], host or row["host"]
    await action_log.record_start(
        uow,
        server_id,
        kind.action,
        caller.request_id,
        project_id=caller.project_id,
        user_id=caller.user_id,
    )
    await action_log.event_started(uow, server_id, kind.event, host=target)
    now = uow.clock.now()
    await uow.conn.execute(
        "UPDATE cmp_instances SET task_state = $2, status = $3, updated_at = $4 WHERE id = $1",
        server_id,
        kind.task_state,
        states.status_of(row["vm_state"], kind.task_state),
        now,
    )
    await uow.emit(
        OperateInstance(instance_id=server_id, operation=kind.operation, **command),
        to=address_of(target),
    )
    deadline = CheckBuildDeadline(
        instance_id=server_id,
        step=kind.task_state,
        deadline_s=deadline_s,
        details={"host": target, "operation": kind.operation},
    )
    await uow.schedule(deadline, at=now + timedelta(seconds=deadline_s), key=timer_key(server_id))


async def operate(req: ApiRequest[Any], server_id: str, operation: str, **command: Any) -> None:
    """Run one operation that needs nothing but the instance (202, no body)."""
    kind = states.OPERATIONS[operation]
    service = req.app[COMPUTE]
    async with service.store.unit(source="compute-api") as uow:
        row = await lock_server(uow, server_id, scope_of(req))
        check_state(row, kind)
        await begin(uow, row, kind, Caller.of(req), deadline_for(service.settings, kind), **command)


# Nova's reboot schema accepts these spellings of the two types.
_REBOOT_TYPES = {
    spelling: operation
    for name, operation in (("SOFT", "reboot_soft"), ("HARD", "reboot_hard"))
    for spelling in (name, name.capitalize(), name.lower())
}


@action("reboot")
async def reboot(req: ApiRequest[ServerAction], server_id: str, body: Any) -> None:
    """``{"reboot": {"type": "SOFT" | "HARD"}}``: status REBOOT or HARD_REBOOT, then ACTIVE."""
    if not isinstance(body, dict) or set(body) != {"type"}:
        raise ApiError(400, "Invalid input for field/attribute reboot: 'type' is required.")
    kind = body["type"]
    if not isinstance(kind, str) or kind not in _REBOOT_TYPES:
        raise ApiError(
            400,
            f"Invalid input for field/attribute type. Value: {kind}. "
            f"{kind!r} is not one of {sorted(_REBOOT_TYPES)}",
        )
    await operate(req, server_id, _REBOOT_TYPES[kind])


@action("pause")
async def pause(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await operate(req, server_id, "pause")


@action("unpause")
async def unpause(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await operate(req, server_id, "unpause")


@action("suspend")
async def suspend(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await operate(req, server_id, "suspend")


@action("resume")
async def resume(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    await operate(req, server_id, "resume")
