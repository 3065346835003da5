"""Compute (Nova) messages: the build saga of an instance, its deletion, and host resource reports.

Events name their instance (stream ``instance:<id>``). The boot flow:
``compute.instance.requested`` (gateway) → ``compute.instance.scheduled`` or
``compute.instance.schedule_failed`` (scheduler) → ``compute.spawn_instance`` to ``compute.<host>``
(conductor) → ``compute.instance.spawned`` or ``compute.instance.spawn_failed`` (agent) → the
conductor persists the outcome. Deleting: ``compute.instance.delete_requested`` (gateway) →
``compute.destroy_instance`` to the host (conductor) → ``compute.instance.destroyed`` (agent) →
``compute.instance.deleted`` (conductor).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Command, Event


class FlavorSpec(BaseModel):
    """The resources an instance asks for (a snapshot of its flavor at boot)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    ephemeral_gb: int = 0
    swap_mb: int = 0
    extra_specs: dict[str, str] = Field(default_factory=dict)


class InstanceEvent(Event):
    """Base of instance events (not sent itself)."""

    stream_prefix: ClassVar[str | None] = "instance"
    stream_key: ClassVar[str | None] = "instance_id"

    instance_id: str


class InstanceRequested(InstanceEvent):
    """A boot request was accepted; the instance is BUILD/scheduling. v1: initial."""

    kind: Literal["compute.instance.requested"] = "compute.instance.requested"
    v: Literal[1] = 1
    project_id: str
    name: str
    flavor: FlavorSpec
    image_ref: str
    availability_zone: str | None = None


class InstanceScheduled(InstanceEvent):
    """The scheduler chose a host and claimed the instance's resources on it. v1: initial."""

    kind: Literal["compute.instance.scheduled"] = "compute.instance.scheduled"
    v: Literal[1] = 1
    host: str


class InstanceScheduleFailed(InstanceEvent):
    """No host fits (NoValidHost). ``eliminated``: hosts each filter removed, in order. v1: initial."""

    kind: Literal["compute.instance.schedule_failed"] = "compute.instance.schedule_failed"
    v: Literal[1] = 1
    reason: str
    hosts_considered: int
    eliminated: dict[str, int] = Field(default_factory=dict)


class InstanceSpawned(InstanceEvent):
    """The host's driver started the instance. v1: initial."""

    kind: Literal["compute.instance.spawned"] = "compute.instance.spawned"
    v: Literal[1] = 1
    host: str
    power_state: int = 1


class InstanceSpawnFailed(InstanceEvent):
    """The host's driver could not start the instance. v1: initial."""

    kind: Literal["compute.instance.spawn_failed"] = "compute.instance.spawn_failed"
    v: Literal[1] = 1
    host: str
    reason: str


class InstanceErrored(InstanceEvent):
    """The instance went to ERROR; ``step`` is the build step that failed or timed out. v1: initial."""

    kind: Literal["compute.instance.errored"] = "compute.instance.errored"
    v: Literal[1] = 1
    step: str
    reason: str
    host: str | None = None


class InstanceActivated(InstanceEvent):
    """The instance is ACTIVE (its build finished). v1: initial."""

    kind: Literal["compute.instance.activated"] = "compute.instance.activated"
    v: Literal[1] = 1
    host: str


class InstanceDeleteRequested(InstanceEvent):
    """A delete was accepted (task_state ``deleting``); it always completes. v1: initial."""

    kind: Literal["compute.instance.delete_requested"] = "compute.instance.delete_requested"
    v: Literal[1] = 1
    project_id: str


class InstanceDestroyed(InstanceEvent):
    """The host no longer runs the instance (also sent when it never did). v1: initial."""

    kind: Literal["compute.instance.destroyed"] = "compute.instance.destroyed"
    v: Literal[1] = 1
    host: str


class InstanceDeleted(InstanceEvent):
    """The instance is gone and its resources were released. v1: initial."""

    kind: Literal["compute.instance.deleted"] = "compute.instance.deleted"
    v: Literal[1] = 1
    host: str | None = None
    forced: bool = False  # the host did not confirm the destroy in time


class HostResourcesReported(Event):
    """A compute agent's periodic report of its host's capacity and running instances.

    v1: initial.
    """

    stream_prefix: ClassVar[str | None] = "host"
    stream_key: ClassVar[str | None] = "host"

    kind: Literal["compute.host.resources_reported"] = "compute.host.resources_reported"
    v: Literal[1] = 1
    host: str
    hypervisor_type: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    instances: list[str] = Field(default_factory=list)
    availability_zone: str = "nova"


class SpawnInstance(Command):
    """Start an instance on the addressed host (``compute.<host>``); idempotent. v1: initial."""

    kind: Literal["compute.spawn_instance"] = "compute.spawn_instance"
    v: Literal[1] = 1
    instance_id: str
    name: str
    flavor: FlavorSpec
    image_ref: str
    user_data: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class DestroyInstance(Command):
    """Stop and remove an instance on the addressed host; idempotent. v1: initial."""

    kind: Literal["compute.destroy_instance"] = "compute.destroy_instance"
    v: Literal[1] = 1
    instance_id: str


class CheckBuildDeadline(Command):
    """A durable timer fired: if the instance is still in ``step``, that step failed. v1: initial."""

    kind: Literal["compute.check_build_deadline"] = "compute.check_build_deadline"
    v: Literal[1] = 1
    instance_id: str
    step: str
    deadline_s: float
    details: dict[str, Any] = Field(default_factory=dict)


class StopInstance(Command):
    """Power off an instance on the addressed host; idempotent. v1: initial."""

    kind: Literal["compute.stop_instance"] = "compute.stop_instance"
    v: Literal[1] = 1
    instance_id: str


class StartInstance(Command):
    """Power on an instance on the addressed host; idempotent. v1: initial."""

    kind: Literal["compute.start_instance"] = "compute.start_instance"
    v: Literal[1] = 1
    instance_id: str


class InstancePowerChanged(InstanceEvent):
    """The host powered an instance on or off (``power_state``: Nova's numbers). v1: initial.

    ``error`` says why the host could not do what it was asked (the state is then the actual one).
    """

    kind: Literal["compute.instance.power_changed"] = "compute.instance.power_changed"
    v: Literal[1] = 1
    host: str
    power_state: int
    error: str | None = None


class InstanceMetadataChanged(InstanceEvent):
    """A user set, replaced or deleted server metadata (``metadata``: all of it now). v1: initial."""

    kind: Literal["compute.instance.metadata_changed"] = "compute.instance.metadata_changed"
    v: Literal[1] = 1
    project_id: str
    metadata: dict[str, str]


class InstanceUpdated(InstanceEvent):
    """A user renamed a server (``PUT /servers/{id}``). v1: initial."""

    kind: Literal["compute.instance.updated"] = "compute.instance.updated"
    v: Literal[1] = 1
    project_id: str
    name: str
