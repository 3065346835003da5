"""The contract between the compute agent and a hypervisor: ``ComputeDriver``.

Designed for the libvirt driver that follows the fake: every call is ``async`` (libvirt's blocking
calls run in threads), every mutating call is idempotent (spawning a running instance or destroying a
missing one succeeds), and the driver reports actual state so the agent can reconcile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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


class HypervisorUnavailable(Exception):
    """The hypervisor cannot be reached at all (libvirtd is down): nothing was done.

    Deliberately not a :class:`DriverError`: handlers turn those into failure reports, but a
    command that meets an absent hypervisor is not failed, it waits until the hypervisor is back
    (:meth:`agents.compute.base.AgentBase.handler_for`).
    """


class InstanceNotFound(DriverError):
    """The hypervisor does not know this instance."""


class ConsoleUnavailable(DriverError):
    """The instance has no console of the kind asked for (no VNC graphics on it, say)."""


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
class DiskSnapshot:
    """A captured root disk staged on the host, waiting for its upload to the image service."""

    image_id: str
    disk_format: str  # what the bytes are: qcow2, raw, ...
    container_format: str  # bare, as Nova uploads snapshots
    size: int


@dataclass(frozen=True)
class ConsoleAddress:
    """Where an instance's graphical console (VNC) listens, as the console proxy reaches it."""

    host: str
    port: int


@dataclass(frozen=True)
class HostResources:
    """The host's capacity (not usage: the control plane accounts claims)."""

    hypervisor_type: str
    vcpus: int
    ram_mb: int
    disk_gb: int


# Called by a driver, on the event loop, when an instance's power state changed by itself.
PowerCallback = Callable[[str, PowerState], None]


class ComputeDriver(Protocol):
    # The agent sets this: a guest that shut itself down is reported at once, not at the next
    # periodic report.
    on_power_change: PowerCallback | None

    async def close(self) -> None:
        """Release the hypervisor connection (the agent stops)."""
        ...

    async def spawn(self, spec: InstanceSpec) -> InstanceInfo:
        """Create and start the instance; idempotent (an existing instance is returned)."""
        ...

    async def destroy(self, instance_id: str) -> None:
        """Stop and remove the instance and its disks; a missing instance is not an error."""
        ...

    async def power_on(self, instance_id: str) -> None: ...

    async def power_off(self, instance_id: str) -> None: ...

    async def reboot(self, instance_id: str, *, hard: bool = False) -> None:
        """Restart the guest: soft asks its OS to (falling back to hard), hard resets it.

        A stopped, paused or suspended instance runs afterwards (RUNNING).
        """
        ...

    async def get_info(self, instance_id: str) -> InstanceInfo:
        """Raise :class:`InstanceNotFound` when the hypervisor does not know it."""
        ...

    async def list_instances(self) -> list[str]:
        """Ids of every instance this host runs (for reconciliation)."""
        ...

    async def host_resources(self) -> HostResources: ...

    # -- operations on an existing instance (agents.compute.operations) ----------------------
    # Each is idempotent (asking for the state the instance is already in succeeds) and raises
    # :class:`InstanceNotFound` for an unknown instance, :class:`DriverError` when it cannot.

    async def pause(self, instance_id: str) -> None:
        """Freeze the running guest in memory (power state PAUSED)."""
        ...

    async def unpause(self, instance_id: str) -> None:
        """Let a paused guest run again (RUNNING)."""
        ...

    async def suspend(self, instance_id: str) -> None:
        """Save the guest's memory to disk and stop it (SUSPENDED; libvirt's managed save)."""
        ...

    async def resume(self, instance_id: str) -> None:
        """Restore a suspended guest from its saved memory (RUNNING)."""
        ...

    async def resize(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        """Run the instance with ``spec.flavor`` on this host, keeping what a revert needs.

        On the host that runs it: grow the root disk, change vCPUs and RAM, and keep the old
        disk and definition aside. On another host (a resize between hosts) ``spec`` says what
        to create here. Disks never shrink (the API refuses that). ``power_on``: whether the
        instance runs afterwards (it keeps the power state it had).
        """
        ...

    async def confirm_resize(self, instance_id: str) -> None:
        """Drop what a revert would need (the old disk and definition); none kept is fine."""
        ...

    async def revert_resize(self, instance_id: str, flavor: FlavorSpec) -> InstanceInfo:
        """Go back to the instance as it was before the resize (old ``flavor``, old disk)."""
        ...

    async def rebuild(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        """Recreate the root disk from ``spec.image_ref``, keeping the instance's identity.

        ``spec`` carries the new name, user data and metadata; ``power_on`` False leaves the
        rebuilt instance powered off (a stopped instance stays stopped, as in Nova).
        """
        ...

    # -- disks to the image service, console (agents.compute.images) ---------------------------

    async def snapshot(self, instance_id: str, image_id: str) -> DiskSnapshot:
        """Capture the instance's root disk (running or stopped) and stage it as ``image_id``.

        Idempotent: a snapshot already staged under ``image_id`` is returned. The staged copy
        stays on the host until :meth:`discard_snapshot`; the agent uploads it in between.
        Raise :class:`InstanceNotFound` for an unknown instance, :class:`DriverError` otherwise.
        """
        ...

    def read_snapshot(self, image_id: str) -> AsyncIterator[bytes]:
        """The staged snapshot's bytes, in chunks (an async generator; nothing whole in memory).

        Raise :class:`DriverError` when nothing is staged under ``image_id``.
        """
        ...

    async def discard_snapshot(self, image_id: str) -> None:
        """Remove a staged snapshot; a missing one is not an error."""
        ...

    async def console_output(self, instance_id: str, length: int | None = None) -> str:
        """The instance's serial console log: its last ``length`` lines (None: all of it).

        Raise :class:`InstanceNotFound` when the instance (or its console log) is not here.
        """
        ...

    async def vnc_console(self, instance_id: str) -> ConsoleAddress:
        """Where the instance's VNC server listens (the console proxy relays RFB to it).

        The libvirt driver reads the port of the ``<graphics type='vnc'>`` element of the live
        domain XML (libvirt allocates it at start) and its listen address (127.0.0.1 unless
        configured otherwise). Raise :class:`InstanceNotFound` for an unknown instance,
        :class:`ConsoleUnavailable` when it has no VNC graphics, :class:`DriverError` when the
        console cannot be reached now (the guest is not running).
        """
        ...
