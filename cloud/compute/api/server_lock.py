"""The ``lock`` and ``unlock`` server actions (Nova's ``lock_server`` controller).

A lock names who took it: ``owner`` when the caller's project owns the server, else ``admin``.
The owner re-locking a locked server changes nothing; anyone else (an admin) takes the lock over.
``unlock`` needs the lock's own kind of caller, or the ``unlock_override`` rule (admins): a member
cannot lift an admin's lock (403). From 2.73 ``lock`` takes ``{"locked_reason": ...}``. What a lock
refuses is checked in one place, :func:`cloud.compute.api.server_access.check_unlocked`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import action_log
from cloud.compute.api import COMPUTE
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import is_admin, locked_server, scope_of
from cloud.compute.api.server_actions import ServerAction, action
from schemas.compute_servers import InstanceLocked, InstanceUnlocked

LOCK_REASON = (2, 73)


class LockBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    locked_reason: str | None = Field(default=None, min_length=1, max_length=255)


def _reason(req: ApiRequest[ServerAction], body: Any) -> str | None:
    if version(req) < LOCK_REASON or body is None:
        return None  # before 2.73 Nova does not look at the body
    try:
        return LockBody.model_validate(body).locked_reason
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "lock"
        raise ApiError(400, f"Invalid input for field/attribute {where}: {first['msg']}") from None


@action("lock")
async def lock(req: ApiRequest[ServerAction], server_id: str, body: Any) -> None:
    reason = _reason(req, body)
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await locked_server(uow.conn, server_id, scope_of(req), "project_id, locked_by")
        owner = row["project_id"] == req.auth.project_id
        if row["locked_by"] is not None and owner:
            return  # Nova: the owner's lock stays as it is
        await action_log.start(uow, req, server_id, "lock")
        await uow.conn.execute(
            """UPDATE cmp_instances SET locked_by = $2, locked_reason = $3, updated_at = $4
               WHERE id = $1""",
            server_id,
            "owner" if owner else "admin",
            reason,
            uow.clock.now(),
        )
        await action_log.event_started(uow, server_id, "api_lock")
        await uow.emit(
            InstanceLocked(
                instance_id=server_id,
                project_id=row["project_id"],
                locked_by="owner" if owner else "admin",
                reason=reason,
            )
        )
        await action_log.event_finished(uow, server_id, "api_lock")


@action("unlock")
async def unlock(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await locked_server(uow.conn, server_id, scope_of(req), "project_id, locked_by")
        expected = "owner" if row["project_id"] == req.auth.project_id else "admin"
        if row["locked_by"] not in (None, expected) and not is_admin(req):
            raise ApiError(
                403,
                "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be "
                "performed.",
            )
        await action_log.start(uow, req, server_id, "unlock")
        await action_log.event_started(uow, server_id, "api_unlock")
        await action_log.event_finished(uow, server_id, "api_unlock")
        if row["locked_by"] is None:
            return
        await uow.conn.execute(
            """UPDATE cmp_instances SET locked_by = NULL, locked_reason = NULL, updated_at = $2
               WHERE id = $1""",
            server_id,
            uow.clock.now(),
        )
        await uow.emit(InstanceUnlocked(instance_id=server_id, project_id=row["project_id"]))
