"""Compute hosts: resource reports with each instance's power state, and reconciliation findings.

A compute agent reports its host every few seconds (``compute.host.state_reported``; a process
running many fake hosts sends ``compute.hosts.state_reported`` with a batch); reports are
published only, not kept in the event log (the runtime's ``publish_only`` kinds), since a thousand
hosts would flood it. What the conductor finds when it compares a report with the database is kept:
``compute.instance.power_synced`` (the database followed the hypervisor) and
``compute.host.instance_orphaned`` (the hypervisor runs something the database does not place there).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Event


class InstancePower(BaseModel):
    """One instance a host runs, as its hypervisor sees it (power state: Nova's numbers)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    instance_id: str
    power_state: int


class HostState(BaseModel):
    """One host's capacity and instances, as one report (alone or in a fleet's batch) carries it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str
    hypervisor_type: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    availability_zone: str = "nova"
    instances: list[InstancePower] = Field(default_factory=list)
    taken_at: datetime


class HostsStateReported(Event):
    """The reports of several hosts one compute process runs (``--fake-hosts``), in one message.

    A thousand hosts reporting one message each would be the conductor's main work; batched, their
    reports cost it a few statements per second. ``reporter`` is the process's node name.
    v1: initial.
    """

    stream_prefix: ClassVar[str | None] = "host"
    stream_key: ClassVar[str | None] = "reporter"

    kind: Literal["compute.hosts.state_reported"] = "compute.hosts.state_reported"
    v: Literal[1] = 1
    reporter: str
    hosts: list[HostState] = Field(default_factory=list)


class HostStateReported(Event):
    """A compute agent's periodic report: capacity plus every instance with its power state.

    ``taken_at`` is when the agent asked its driver; the conductor ignores instances whose database
    row changed after it (the report may be older than the last transition). v1: initial.
    """

    stream_prefix: ClassVar[str | None] = "host"
    stream_key: ClassVar[str | None] = "host"

    kind: Literal["compute.host.state_reported"] = "compute.host.state_reported"
    v: Literal[1] = 1
    host: str
    hypervisor_type: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    availability_zone: str = "nova"
    instances: list[InstancePower] = Field(default_factory=list)
    taken_at: datetime


class InstancePowerSynced(Event):
    """The database took the power state the hypervisor reports (Nova's power-state sync).

    ``vm_state`` is set when the sync also changed it (an ACTIVE instance found shut down becomes
    ``stopped``). v1: initial.
    """

    stream_prefix: ClassVar[str | None] = "instance"
    stream_key: ClassVar[str | None] = "instance_id"

    kind: Literal["compute.instance.power_synced"] = "compute.instance.power_synced"
    v: Literal[1] = 1
    instance_id: str
    host: str
    old_power_state: int
    power_state: int
    vm_state: str | None = None


class HostInstanceOrphaned(Event):
    """A host runs an instance the database does not place there.

    ``reason``: ``unknown`` (no such instance), ``deleted``, or ``elsewhere`` (placed on another
    host); ``destroyed``: whether the conductor told the host to destroy it. v1: initial.
    """

    stream_prefix: ClassVar[str | None] = "host"
    stream_key: ClassVar[str | None] = "host"

    kind: Literal["compute.host.instance_orphaned"] = "compute.host.instance_orphaned"
    v: Literal[1] = 1
    host: str
    instance_id: str
    power_state: int
    reason: Literal["unknown", "deleted", "elsewhere"]
    destroyed: bool = False
