"""Operations on existing instances and their outcomes; the instance-action log.

Reboot, pause, suspend, resize, rebuild (and the states they pass through) run as one generic
saga: the gateway sets a task state and sends ``compute.operate_instance`` to ``compute.<host>``;
the agent runs the driver and answers ``compute.instance.operation_finished``; the conductor
records the outcome.

The ``compute.instance.action_*`` events build Nova's ``os-instance-actions`` from the event log:
one action per correlation id (the API request id), with its steps ("events" in Nova's words)
started and finished.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Command
from schemas.compute import FlavorSpec, InstanceEvent

# What an agent can be asked to do with an instance it runs (see ``OperateInstance``).
Operation = Literal[
    "stop",
    "start",
    "reboot_soft",
    "reboot_hard",
    "pause",
    "unpause",
    "suspend",
    "resume",
    "resize",
    "confirm_resize",
    "revert_resize",
    "rebuild",
]


class OperateInstance(Command):
    """Run ``operation`` on an instance on the addressed host; idempotent. v1: initial.

    ``flavor`` is the flavor to run with (resize: the new one, revert: the old one, rebuild: the
    current one); resize, rebuild and a cross-host revert also carry what a spawn needs.
    ``source_host`` is set on a resize between hosts (confirm: the host that gives it away).
    """

    kind: Literal["compute.operate_instance"] = "compute.operate_instance"
    v: Literal[1] = 1
    instance_id: str
    operation: Operation
    flavor: FlavorSpec | None = None
    name: str | None = None
    image_ref: str | None = None
    user_data: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    source_host: str | None = None
    power_on: bool = True  # rebuild: leave the instance running (False: powered off, as before)


class InstanceOperationFinished(InstanceEvent):
    """The host ran (or could not run) an operation. v1: initial.

    ``power_state``: the instance's actual power state afterwards (Nova's numbers);
    ``error``: why the driver failed, None on success.
    """

    kind: Literal["compute.instance.operation_finished"] = "compute.instance.operation_finished"
    v: Literal[1] = 1
    host: str
    operation: Operation
    power_state: int
    error: str | None = None


class InstanceActionStarted(InstanceEvent):
    """A user started an action on an instance (``os-instance-actions``). v1: initial.

    ``request_id`` is the API request's id; the action's other events share it as correlation id.
    """

    kind: Literal["compute.instance.action_started"] = "compute.instance.action_started"
    v: Literal[1] = 1
    action: str
    request_id: str
    project_id: str | None = None
    user_id: str | None = None


class InstanceActionEventStarted(InstanceEvent):
    """A step of an action began (Nova's action "event", e.g. ``compute_reboot_instance``). v1."""

    kind: Literal["compute.instance.action_event_started"] = "compute.instance.action_event_started"
    v: Literal[1] = 1
    event: str
    host: str | None = None


class InstanceActionEventFinished(InstanceEvent):
    """A step of an action ended; ``error`` (None on success) is shown as its traceback. v1."""

    kind: Literal["compute.instance.action_event_finished"] = (
        "compute.instance.action_event_finished"
    )
    v: Literal[1] = 1
    event: str
    host: str | None = None
    error: str | None = None
    details: str | None = None
