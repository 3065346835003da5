"""``FakeDriver``: an in-memory hypervisor with configurable capacity, latency and failures.

One process can hold many (one per fake host) for scale tests. Failure injection: ``fail_spawn``
makes every spawn raise (with that message); ``fail_instances`` fails only the named instances,
``fail_images`` every instance of the named images, and ``spawn_failure_rate`` a random share of
spawns (seeded by ``seed``, so a run can be repeated). ``set_power_state`` and ``adopt`` change the
hypervisor behind the control plane's back, as an operator or a crash would (reconciliation tests).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from agents.compute.driver import (
    ConsoleAddress,
    ConsoleUnavailable,
    DiskSnapshot,
    DriverError,
    HostResources,
    InstanceInfo,
    InstanceNotFound,
    InstanceSpec,
    PowerCallback,
    PowerState,
)
from schemas.compute import FlavorSpec


@dataclass
class FakeDriver:
    vcpus: int = 16
    ram_mb: int = 32768
    disk_gb: int = 500
    spawn_latency_s: float = 0.0
    destroy_latency_s: float = 0.0
    fail_spawn: str | None = None
    fail_instances: set[str] = field(default_factory=set)
    fail_images: set[str] = field(default_factory=set)
    spawn_failure_rate: float = 0.0
    seed: int | None = None
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    # What a resize keeps for its revert: the instance as it was (dropped on confirm).
    resize_backups: dict[str, InstanceInfo] = field(default_factory=dict)
    # Snapshots and console (agents.compute.images): each instance's "disk" is a line naming
    # the image it booted from; ``fail_snapshot`` makes every snapshot raise (with that message).
    snapshot_latency_s: float = 0.0
    fail_snapshot: str | None = None
    disks: dict[str, bytes] = field(default_factory=dict)
    consoles: dict[str, list[str]] = field(default_factory=dict)
    snapshots: dict[str, bytes] = field(default_factory=dict)
    # The fake has no real VNC: every running instance's console is this address (a test or
    # demo stands a VNC server there); None: instances have no VNC console.
    vnc_address: ConsoleAddress | None = None
    on_power_change: PowerCallback | None = None
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.spawn_failure_rate <= 1.0:
            raise ValueError("spawn_failure_rate is a share between 0 and 1")
        self._random = random.Random(self.seed)

    async def spawn(self, spec: InstanceSpec) -> InstanceInfo:
        existing = self.instances.get(spec.instance_id)
        if existing is not None:
            return existing
        if self.spawn_latency_s:
            await asyncio.sleep(self.spawn_latency_s)
        if self.fail_spawn is not None:
            raise DriverError(self.fail_spawn)
        if spec.instance_id in self.fail_instances:
            raise DriverError(f"injected failure for {spec.instance_id}")
        if spec.image_ref in self.fail_images:
            raise DriverError(f"injected failure for image {spec.image_ref}")
        if self.spawn_failure_rate and self._random.random() < self.spawn_failure_rate:
            raise DriverError("injected random spawn failure")
        info = InstanceInfo(
            spec.instance_id, PowerState.RUNNING, spec.flavor.vcpus, spec.flavor.ram_mb
        )
        self.instances[spec.instance_id] = info
        self._boot_console(spec)
        return info

    async def destroy(self, instance_id: str) -> None:
        if self.destroy_latency_s:
            await asyncio.sleep(self.destroy_latency_s)
        self.instances.pop(instance_id, None)
        self.resize_backups.pop(instance_id, None)
        self.disks.pop(instance_id, None)
        self.consoles.pop(instance_id, None)

    async def _set_power(self, instance_id: str, state: PowerState) -> None:
        info = await self.get_info(instance_id)
        self.instances[instance_id] = InstanceInfo(instance_id, state, info.vcpus, info.ram_mb)

    async def power_on(self, instance_id: str) -> None:
        await self._set_power(instance_id, PowerState.RUNNING)

    async def power_off(self, instance_id: str) -> None:
        await self._set_power(instance_id, PowerState.SHUTDOWN)

    async def reboot(self, instance_id: str, *, hard: bool = False) -> None:
        await self._set_power(instance_id, PowerState.RUNNING)

    # -- operations on an existing instance (helper B) -------------------------------------------

    async def pause(self, instance_id: str) -> None:
        await self._require(instance_id, PowerState.RUNNING, PowerState.PAUSED)
        await self._set_power(instance_id, PowerState.PAUSED)

    async def unpause(self, instance_id: str) -> None:
        await self._require(instance_id, PowerState.PAUSED, PowerState.RUNNING)
        await self._set_power(instance_id, PowerState.RUNNING)

    async def suspend(self, instance_id: str) -> None:
        await self._require(instance_id, PowerState.RUNNING, PowerState.SUSPENDED)
        await self._set_power(instance_id, PowerState.SUSPENDED)

    async def resume(self, instance_id: str) -> None:
        await self._require(instance_id, PowerState.SUSPENDED, PowerState.RUNNING)
        await self._set_power(instance_id, PowerState.RUNNING)

    async def _require(self, instance_id: str, *allowed: PowerState) -> None:
        state = (await self.get_info(instance_id)).power_state
        if state not in allowed:
            raise DriverError(f"instance {instance_id} is {state.name.lower()}")

    async def resize(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        old = self.instances.get(spec.instance_id)
        if old is not None and spec.instance_id not in self.resize_backups:
            self.resize_backups[spec.instance_id] = old
        state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        info = InstanceInfo(spec.instance_id, state, spec.flavor.vcpus, spec.flavor.ram_mb)
        self.instances[spec.instance_id] = info
        return info

    async def confirm_resize(self, instance_id: str) -> None:
        self.resize_backups.pop(instance_id, None)

    async def revert_resize(self, instance_id: str, flavor: FlavorSpec) -> InstanceInfo:
        current = await self.get_info(instance_id)  # a destroyed instance stays destroyed
        self.resize_backups.pop(instance_id, None)
        info = InstanceInfo(instance_id, current.power_state, flavor.vcpus, flavor.ram_mb)
        self.instances[instance_id] = info
        return info

    async def rebuild(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        await self.get_info(spec.instance_id)  # rebuilding needs the instance
        if spec.image_ref in self.fail_images:
            raise DriverError(f"injected failure for image {spec.image_ref}")
        state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        info = InstanceInfo(spec.instance_id, state, spec.flavor.vcpus, spec.flavor.ram_mb)
        self.instances[spec.instance_id] = info
        return info

    async def get_info(self, instance_id: str) -> InstanceInfo:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise InstanceNotFound(instance_id) from None

    async def list_instances(self) -> list[str]:
        return sorted(self.instances)

    def set_power_state(self, instance_id: str, state: PowerState) -> None:
        """Change an instance's power state outside any command (a guest shutdown, a crash)."""
        info = self.instances[instance_id]
        self.instances[instance_id] = InstanceInfo(instance_id, state, info.vcpus, info.ram_mb)
        if self.on_power_change is not None:
            self.on_power_change(instance_id, state)

    def adopt(self, instance_id: str, state: PowerState = PowerState.RUNNING) -> None:
        """Run an instance nobody asked for (an orphan left by a lost delete, say)."""
        self.instances[instance_id] = InstanceInfo(instance_id, state, 1, 512)

    async def close(self) -> None:
        """Nothing to release."""

    async def host_resources(self) -> HostResources:
        return HostResources("fake", self.vcpus, self.ram_mb, self.disk_gb)

    # -- disks to the image service, console ---------------------------------------------------

    def _boot_console(self, spec: InstanceSpec) -> None:
        self.disks[spec.instance_id] = f"aiostack fake disk; base image {spec.image_ref}\n".encode()
        self.consoles[spec.instance_id] = [
            "[    0.000000] Linux version 6.1.0-aiostack (fake hypervisor)",
            f"[    0.100000] Booting instance {spec.instance_id} ({spec.name})",
            f"[    0.200000] Root disk from image {spec.image_ref}",
            f"[    0.300000] Flavor {spec.flavor.name}: {spec.flavor.vcpus} vCPU, "
            f"{spec.flavor.ram_mb} MiB RAM",
            f"{spec.name} login: ",
        ]

    async def snapshot(self, instance_id: str, image_id: str) -> DiskSnapshot:
        if image_id not in self.snapshots:
            await self.get_info(instance_id)  # InstanceNotFound
            if self.snapshot_latency_s:
                await asyncio.sleep(self.snapshot_latency_s)
            if self.fail_snapshot is not None:
                raise DriverError(self.fail_snapshot)
            self.snapshots[image_id] = self.disks.get(instance_id, b"aiostack fake disk\n")
        return DiskSnapshot(image_id, "raw", "bare", len(self.snapshots[image_id]))

    async def read_snapshot(self, image_id: str) -> AsyncIterator[bytes]:
        data = self.snapshots.get(image_id)
        if data is None:
            raise DriverError(f"no snapshot staged as {image_id}")
        yield data

    async def discard_snapshot(self, image_id: str) -> None:
        self.snapshots.pop(image_id, None)

    async def console_output(self, instance_id: str, length: int | None = None) -> str:
        lines = self.consoles.get(instance_id)
        if lines is None:  # an instance this host got otherwise than by a spawn (resize, adopt)
            await self.get_info(instance_id)  # InstanceNotFound
            lines = [f"[    0.000000] Instance {instance_id} running (fake hypervisor)"]
        shown = lines if length is None else lines[-length:] if length > 0 else []
        return "\n".join(shown)

    async def vnc_console(self, instance_id: str) -> ConsoleAddress:
        info = await self.get_info(instance_id)  # InstanceNotFound
        if self.vnc_address is None:
            raise ConsoleUnavailable("the fake hypervisor gives instances no VNC console")
        if info.power_state not in (PowerState.RUNNING, PowerState.PAUSED):
            # As a real guest: its VNC server lives only while it runs.
            raise DriverError(f"instance {instance_id} is {info.power_state.name.lower()}")
        return self.vnc_address
