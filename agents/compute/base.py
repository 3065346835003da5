"""The compute agent's shared part: its host, its driver, its queue and its resource reports.

The agent is one actor assembled from handler mixins (:mod:`agents.compute.agent` and the modules
it names); each subclasses :class:`AgentBase` and adds ``@handles`` methods. One agent object runs
one host; an agent is an actor of its own (queue ``compute.<host>``) or one of many hosts behind a
single consumer (:class:`agents.compute.fleet.ComputeFleet`), which calls the same handlers.

A report carries every instance with its power state; the conductor reconciles it with the database.
"""

from __future__ import annotations

from typing import ClassVar

from agents.compute.driver import ComputeDriver, InstanceNotFound
from cloud.runtime.actor import Actor, Context
from cloud.runtime.bus import COMMANDS, Binding
from schemas.compute_hosts import HostState, HostStateReported, InstancePower


def address_of(host: str) -> str:
    """The routing key (and queue) of a host's compute agent."""
    return f"compute.{host}"


class AgentBase(Actor):
    """Queue: ``compute.<host>``. What every handler of the agent shares: host, driver, reports."""

    name: ClassVar[str] = "compute"
    tick_interval: ClassVar[float] = 5.0

    def __init__(self, host: str, driver: ComputeDriver, availability_zone: str = "nova") -> None:
        self.host, self.driver, self.availability_zone = host, driver, availability_zone

    @property
    def queue(self) -> str:
        return address_of(self.host)

    def bindings(self) -> list[Binding]:
        return [Binding(COMMANDS, address_of(self.host))]

    def readiness(self) -> dict[str, bool]:
        return {"consuming": True, "hypervisor": True}

    async def tick(self, ctx: Context) -> None:
        await self.report(ctx)

    async def state(self, ctx: Context) -> HostState:
        """The host's capacity and each instance's actual power state, as of now."""
        taken_at = ctx.clock.now()
        resources = await self.driver.host_resources()
        instances: list[InstancePower] = []
        for instance_id in await self.driver.list_instances():
            try:
                info = await self.driver.get_info(instance_id)
            except InstanceNotFound:
                continue  # destroyed between the two calls
            instances.append(InstancePower(instance_id=instance_id, power_state=info.power_state))
        return HostState(
            host=self.host,
            hypervisor_type=resources.hypervisor_type,
            vcpus=resources.vcpus,
            ram_mb=resources.ram_mb,
            disk_gb=resources.disk_gb,
            availability_zone=self.availability_zone,
            instances=instances,
            taken_at=taken_at,
        )

    async def report(self, ctx: Context) -> None:
        """Emit the host's state (the conductor registers the host and reconciles it)."""
        state = await self.state(ctx)
        await ctx.emit(HostStateReported(**state.model_dump()))
