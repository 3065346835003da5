"""The contract between the compute agent and a hypervisor: ``ComputeDriver``.

Designed for the libvirt driver that follows the fake: every call is ``async`` (libvirt's blocking
calls run in threads), every mutating call is idempotent (spawning a running instance or destroying a
missing one succeeds), and the driver reports actual state so the agent can reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from schemas.compute import FlavorSpec


class PowerState(IntEnum):
    """Nova's power states, as the API shows them (``OS-EXT-STS:power_state``)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


class DriverError(Exception):
    """The hypervisor refused or failed an operation; the message says why."""


class InstanceNotFound(DriverError):
    """The hypervisor does not know this instance."""


@dataclass(frozen=True)
class InstanceSpec:
    """What the driver needs to create an instance."""

    instance_id: str
    name: str
    flavor: FlavorSpec
    image_ref: str
    user_data: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    power_state: PowerState
    vcpus: int
    ram_mb: int


@dataclass(frozen=True)
class HostResources:
    """The host's capacity (not usage: the control plane accounts claims)."""

    hypervisor_type: str
    vcpus: int
    ram_mb: int
    disk_gb: int


class ComputeDriver(Protocol):
    async def spawn(self, spec: InstanceSpec) -> InstanceInfo:
        """Create and start the instance; idempotent (an existing instance is returned)."""
        ...

    async def destroy(self, instance_id: str) -> None:
        """Stop and remove the instance and its disks; a missing instance is not an error."""
        ...

    async def power_on(self, instance_id: str) -> None: ...

    async def power_off(self, instance_id: str) -> None: ...

    async def reboot(self, instance_id: str, *, hard: bool = False) -> None: ...

    async def get_info(self, instance_id: str) -> InstanceInfo:
        """Raise :class:`InstanceNotFound` when the hypervisor does not know it."""
        ...

    async def list_instances(self) -> list[str]:
        """Ids of every instance this host runs (for reconciliation)."""
        ...

    async def host_resources(self) -> HostResources: ...
