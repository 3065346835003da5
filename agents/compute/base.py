"""The compute agent's shared part: its host, its driver, its queue and its resource reports.

The agent is one actor assembled from handler mixins (:mod:`agents.compute.agent` and the modules
it names); each subclasses :class:`AgentBase` and adds ``@handles`` methods. One agent object runs
one host; an agent is an actor of its own (queue ``compute.<host>``) or one of many hosts behind a
single consumer (:class:`agents.compute.fleet.ComputeFleet`), which calls the same handlers.

A report carries every instance with its power state; the conductor reconciles it with the database.
A power change the driver notices by itself (a guest that shut down, a domain killed behind our
back) marks the host for an early report.

While the hypervisor cannot be reached (libvirtd down, at start or later) the agent says so in its
readiness, sends no reports (so the scheduler stops placing work here once the host goes stale), and
holds every command until the hypervisor answers again: nothing is failed or lost meanwhile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from agents.compute.driver import (
    ComputeDriver,
    HypervisorUnavailable,
    InstanceNotFound,
    PowerState,
)
from cloud.runtime.actor import Actor, Context, HandlerFn
from cloud.runtime.bus import COMMANDS, Binding
from schemas import Message
from schemas.compute_hosts import HostState, HostStateReported, InstancePower

log = structlog.get_logger("aiostack.compute")
# Waits between attempts to reach an absent hypervisor: soon at first, then every few seconds.
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 5.0)


def address_of(host: str) -> str:
    """The routing key (and queue) of a host's compute agent."""
    return f"compute.{host}"


@dataclass(frozen=True)
class WhenHypervisorAnswers:
    """A handler of ``agent`` that first waits for the hypervisor; one that loses it midway is
    retried by the consumer (handlers are idempotent), and waits again."""

    agent: AgentBase
    handler: HandlerFn

    async def __call__(self, msg: Any, ctx: Context) -> None:
        await self.agent.hypervisor_answers()
        try:
            await self.handler(msg, ctx)
        except HypervisorUnavailable as exc:
            self.agent.hypervisor_lost(str(exc))
            raise


class AgentBase(Actor):
    """Queue: ``compute.<host>``. What every handler of the agent shares: host, driver, reports."""

    name: ClassVar[str] = "compute"
    tick_interval: ClassVar[float] = 5.0

    def __init__(self, host: str, driver: ComputeDriver, availability_zone: str = "nova") -> None:
        self.host, self.driver, self.availability_zone = host, driver, availability_zone
        # None: not reached yet; else whether the last attempt to reach the hypervisor worked.
        self.hypervisor_ok: bool | None = None
        # A power state changed outside any command since the last report.
        self.power_changed = False
        driver.on_power_change = self._power_changed

    @property
    def queue(self) -> str:
        return address_of(self.host)

    def bindings(self) -> list[Binding]:
        return [Binding(COMMANDS, address_of(self.host))]

    def readiness(self) -> dict[str, bool]:
        return {"consuming": True, "hypervisor": bool(self.hypervisor_ok)}

    def _power_changed(self, instance_id: str, state: PowerState) -> None:
        log.info(
            "instance.power_noticed", host=self.host, instance_id=instance_id, state=state.name
        )
        self.power_changed = True

    def hypervisor_lost(self, error: str) -> None:
        self._hypervisor(False, error)

    def _hypervisor(self, ok: bool, error: str | None = None) -> None:
        """Record whether the hypervisor answers; log only the transitions."""
        if ok and self.hypervisor_ok is not True:
            log.info("compute.hypervisor_available", host=self.host)
        elif not ok and self.hypervisor_ok is not False:
            log.warning("compute.hypervisor_unavailable", host=self.host, error=error)
        self.hypervisor_ok = ok

    async def hypervisor_answers(self) -> None:
        """Return once the hypervisor answers (at once when it did last time)."""
        attempt = 0
        while self.hypervisor_ok is not True:
            try:
                await self.driver.host_resources()
            except HypervisorUnavailable as exc:
                self.hypervisor_lost(str(exc))
                await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
                attempt += 1
            else:
                self._hypervisor(True)

    def handler_for(self, message: Message) -> HandlerFn | None:
        handler = super().handler_for(message)
        return None if handler is None else WhenHypervisorAnswers(self, handler)

    async def close(self) -> None:
        await self.driver.close()

    async def tick(self, ctx: Context) -> None:
        await self.report(ctx)

    async def state(self, ctx: Context) -> HostState:
        """The host's capacity and each instance's actual power state, as of now."""
        self.power_changed = False
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
        """Emit the host's state (the conductor registers the host and reconciles it); nothing
        while the hypervisor cannot be reached (a stale host gets no new work)."""
        state = await self.reachable_state(ctx)
        if state is not None:
            await ctx.emit(HostStateReported(**state.model_dump()))

    async def reachable_state(self, ctx: Context) -> HostState | None:
        """:meth:`state`, or None (and readiness says so) when the hypervisor does not answer."""
        try:
            state = await self.state(ctx)
        except HypervisorUnavailable as exc:
            self.hypervisor_lost(str(exc))
            return None
        self._hypervisor(True)
        return state
