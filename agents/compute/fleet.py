"""Many compute hosts behind one consumer: ``aiostack run compute --fake-hosts N``.

A queue per host would make a thousand queues (and a thousand consumers, channels and prefetch
windows) for a thousand fake hosts. Instead the fleet is one actor with one queue, bound to every
host's routing key ``compute.<host>``; a delivery goes to the agent object of the host its routing
key names, so each host keeps its own driver and the handler mixins (``self.host``,
``self.driver``, ``self.report(ctx)``) work unchanged. With one host the queue is ``compute.<host>``,
exactly what a lone agent declares.

Reports are spread over the report interval (a slice of the hosts per tick) and a tick's slice
travels as one batched message (``compute.hosts.state_reported``), so the conductor handles one
message a second, in a few statements, instead of two hundred.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from agents.compute.agent import ComputeAgent
from agents.compute.base import AgentBase, address_of
from agents.compute.driver import ComputeDriver
from cloud.runtime.actor import Actor, Context, HandlerFn
from cloud.runtime.bus import COMMANDS, Binding
from schemas import Message
from schemas.compute_hosts import HostsStateReported

# Hosts per batched report: bounds a message to a few hundred KiB even with many instances.
REPORT_BATCH = 250


def host_names(base: str, count: int) -> list[str]:
    """``base`` alone for one host; ``base-001`` ... for many (zero-padded, so they sort)."""
    if count == 1:
        return [base]
    width = len(str(count))
    return [f"{base}-{i:0{width}d}" for i in range(1, count + 1)]


class ComputeFleet(Actor):
    """Queue: ``compute.<base host>``, bound to ``compute.<host>`` of every host it runs."""

    name: ClassVar[str] = "compute"
    tick_interval: ClassVar[float] = 1.0

    def __init__(
        self, base_host: str, agents: Sequence[AgentBase], report_interval_s: float = 5.0
    ) -> None:
        if not agents:
            raise ValueError("a fleet runs at least one host")
        self.base_host, self.agents = base_host, list(agents)
        self._by_address = {address_of(a.host): a for a in self.agents}
        if len(self._by_address) != len(self.agents):
            raise ValueError("host names of a fleet must be unique")
        # Each host reports once per `slots` ticks; tick n reports the hosts i with i % slots == n.
        self._slots = max(1, round(report_interval_s / self.tick_interval))
        self._ticks = 0

    @property
    def queue(self) -> str:
        return address_of(self.base_host)

    def bindings(self) -> list[Binding]:
        return [Binding(COMMANDS, address) for address in self._by_address]

    def agent(self, host: str) -> AgentBase | None:
        return self._by_address.get(address_of(host))

    def route(self, message: Message, routing_key: str) -> HandlerFn | None:
        agent = self._by_address.get(routing_key)
        return None if agent is None else agent.handler_for(message)

    def order_key(self, routing_key: str) -> str | None:
        # Hosts are independent: a slow spawn on one must not hold up the others' commands.
        return routing_key

    def readiness(self) -> dict[str, bool]:
        return {
            "consuming": True,
            "hypervisor": all(a.readiness().get("hypervisor", True) for a in self.agents),
        }

    async def close(self) -> None:
        for agent in self.agents:
            await agent.close()

    async def tick(self, ctx: Context) -> None:
        slot = self._ticks % self._slots
        self._ticks += 1
        due = self.agents[slot :: self._slots]
        # Hosts whose driver noticed a power change report now, whatever their slot.
        due += [a for a in self.agents if a.power_changed and a not in due]
        if not due:  # fewer hosts than slots: this tick's slot is empty
            return
        if len(self.agents) == 1:
            await due[0].report(ctx)  # exactly what a lone agent sends
            return
        for first in range(0, len(due), REPORT_BATCH):
            states = [await a.reachable_state(ctx) for a in due[first : first + REPORT_BATCH]]
            reached = [s for s in states if s is not None]
            if reached:
                await ctx.emit(HostsStateReported(reporter=self.base_host, hosts=reached))


def build_fleet(
    base_host: str,
    count: int,
    driver_factory: Callable[[str], ComputeDriver],
    *,
    report_interval_s: float = 5.0,
    availability_zone: str = "nova",
) -> ComputeFleet:
    """A fleet of ``count`` hosts named after ``base_host``, each with its own driver."""
    agents = [
        ComputeAgent(host, driver_factory(host), availability_zone)
        for host in host_names(base_host, count)
    ]
    return ComputeFleet(base_host, agents, report_interval_s)
