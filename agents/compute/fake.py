"""``FakeDriver``: an in-memory hypervisor with configurable capacity, latency and failures.

One process can hold many (one per fake host) for scale tests. Failure injection: ``fail_spawn``
makes every spawn raise (with that message); ``fail_instances`` fails only the named instances.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agents.compute.driver import (
    DriverError,
    HostResources,
    InstanceInfo,
    InstanceNotFound,
    InstanceSpec,
    PowerState,
)


@dataclass
class FakeDriver:
    vcpus: int = 16
    ram_mb: int = 32768
    disk_gb: int = 500
    spawn_latency_s: float = 0.0
    destroy_latency_s: float = 0.0
    fail_spawn: str | None = None
    fail_instances: set[str] = field(default_factory=set)
    instances: dict[str, InstanceInfo] = field(default_factory=dict)

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
        info = InstanceInfo(
            spec.instance_id, PowerState.RUNNING, spec.flavor.vcpus, spec.flavor.ram_mb
        )
        self.instances[spec.instance_id] = info
        return info

    async def destroy(self, instance_id: str) -> None:
        if self.destroy_latency_s:
            await asyncio.sleep(self.destroy_latency_s)
        self.instances.pop(instance_id, None)

    async def _set_power(self, instance_id: str, state: PowerState) -> None:
        info = await self.get_info(instance_id)
        self.instances[instance_id] = InstanceInfo(instance_id, state, info.vcpus, info.ram_mb)

    async def power_on(self, instance_id: str) -> None:
        await self._set_power(instance_id, PowerState.RUNNING)

    async def power_off(self, instance_id: str) -> None:
        await self._set_power(instance_id, PowerState.SHUTDOWN)

    async def reboot(self, instance_id: str, *, hard: bool = False) -> None:
        await self._set_power(instance_id, PowerState.RUNNING)

    async def get_info(self, instance_id: str) -> InstanceInfo:
        try:
            return self.instances[instance_id]
        except KeyError:
            raise InstanceNotFound(instance_id) from None

    async def list_instances(self) -> list[str]:
        return sorted(self.instances)

    async def host_resources(self) -> HostResources:
        return HostResources("fake", self.vcpus, self.ram_mb, self.disk_gb)
