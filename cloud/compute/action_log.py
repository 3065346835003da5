"""Record instance actions (Nova's ``os-instance-actions``) in the event log.

An action is what one API request did to an instance ("reboot", "lock", "createImage", ...). It is
made of events on the instance's stream that share one correlation id, the request id
(``X-Openstack-Request-Id``): ``compute.instance.action_started`` and, per step (Nova calls a step
an "event", e.g. ``compute_reboot_instance``), ``action_event_started`` / ``action_event_finished``.
``cloud.compute.api.instance_actions`` folds them back into actions.

Use, in the API unit of work that accepts the action (call :func:`start` FIRST, before emitting
anything else, so every message the unit sends, and every message those cause, carries the request
id as its correlation id)::

    async with store.unit(source="compute-api") as uow:
        ...lock the row, check its state...
        await action_log.start(uow, req, server_id, "lock")
        await action_log.event_started(uow, server_id, "compute_pause_instance", host=host)
        await uow.emit(SomeCommand(...), to=address_of(host))

and in the conductor, when the outcome comes back (``ctx`` keeps the correlation id)::

    await action_log.event_finished(ctx, instance_id, "compute_pause_instance", host=host,
                                    error=msg.error)

Events only reach the event log from a database unit (the API or a control-plane actor such as
the conductor); an agent reports its outcome in its own event and the conductor records it.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from cloud.api.router import ApiRequest
from cloud.store.writes import UnitOfWork
from schemas import Envelope, Message
from schemas.compute_ops import (
    InstanceActionEventFinished,
    InstanceActionEventStarted,
    InstanceActionStarted,
)


class Emitter(Protocol):
    """A unit of work or a handler's context: anything that can emit a message."""

    async def emit(
        self, message: Message, *, to: str | None = None, expected_version: int | None = None
    ) -> Envelope: ...


def request_id_of(req: ApiRequest[Any]) -> str:
    """The request's id as the client sees it in ``X-Openstack-Request-Id``."""
    return req.request_id or f"req-{uuid.uuid4()}"


def correlate(uow: UnitOfWork, request_id: str) -> None:
    """Make every message ``uow`` emits from now on carry ``request_id`` as correlation id.

    A unit that already has a cause (it handles a message) keeps that cause's correlation.
    """
    if uow.cause is None:
        uow.cause = Envelope(
            id=request_id, kind="api.request", v=1, correlation_id=request_id, source=uow.source
        )


async def start(uow: UnitOfWork, req: ApiRequest[Any], instance_id: str, action: str) -> str:
    """Record that this request starts ``action`` on the instance; returns the request id.

    Call it before the unit emits anything else (see the module's docstring).
    """
    auth = req.maybe_auth
    return await record_start(
        uow,
        instance_id,
        action,
        request_id_of(req),
        project_id=auth.project.id if auth is not None and auth.project else None,
        user_id=auth.user.id if auth is not None else None,
    )


async def record_start(
    uow: UnitOfWork,
    instance_id: str,
    action: str,
    request_id: str,
    *,
    project_id: str | None = None,
    user_id: str | None = None,
) -> str:
    """:func:`start` without an HTTP request (the caller names the request and the user)."""
    correlate(uow, request_id)
    await uow.emit(
        InstanceActionStarted(
            instance_id=instance_id,
            action=action,
            request_id=request_id,
            project_id=project_id,
            user_id=user_id,
        )
    )
    return request_id


async def event_started(
    writer: Emitter, instance_id: str, event: str, *, host: str | None = None
) -> None:
    """Record that the step ``event`` of the current action began (on ``host``)."""
    await writer.emit(InstanceActionEventStarted(instance_id=instance_id, event=event, host=host))


async def event_finished(
    writer: Emitter,
    instance_id: str,
    event: str,
    *,
    host: str | None = None,
    error: str | None = None,
    details: str | None = None,
) -> None:
    """Record that the step ``event`` ended: ``error`` None is "Success", else "Error"."""
    await writer.emit(
        InstanceActionEventFinished(
            instance_id=instance_id, event=event, host=host, error=error, details=details
        )
    )
