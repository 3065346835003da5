"""The compute agent's shared part: its host, its driver, its queue and its resource reports.

The agent is one actor assembled from handler mixins (:mod:`agents.compute.agent` and the modules
it names); each subclasses :class:`AgentBase` and adds ``@handles`` methods.
"""

from __future__ import annotations

from typing import ClassVar

from agents.compute.driver import ComputeDriver
from cloud.runtime.actor import Actor, Context
from cloud.runtime.bus import COMMANDS, Binding
from schemas.compute import HostResourcesReported


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

    async def report(self, ctx: Context) -> None:
        resources = await self.driver.host_resources()
        await ctx.emit(
            HostResourcesReported(
                host=self.host,
                hypervisor_type=resources.hypervisor_type,
                vcpus=resources.vcpus,
                ram_mb=resources.ram_mb,
                disk_gb=resources.disk_gb,
                instances=await self.driver.list_instances(),
                availability_zone=self.availability_zone,
            )
        )
