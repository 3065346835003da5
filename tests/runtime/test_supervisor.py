"""The supervisor restarts what crashes and stops gracefully."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import structlog

from cloud.runtime.actor import Actor, Context, handles
from cloud.runtime.bus import Bus
from cloud.runtime.supervisor import RuntimeOptions, Supervisor
from cloud.store.db import Store
from tests.conftest import eventually
from tests.messages import Pinged


class Crashy(Actor):
    """Its periodic work crashes twice, then runs."""

    name: ClassVar[str] = "crashy"
    tick_interval: ClassVar[float] = 0.05

    def __init__(self) -> None:
        self.ticks = 0

    @handles(Pinged)
    async def ignore(self, msg: Pinged, ctx: Context) -> None:
        return None

    async def tick(self, ctx: Context) -> None:
        self.ticks += 1
        if self.ticks <= 2:
            raise RuntimeError(f"crash number {self.ticks}")


async def test_crashed_task_is_restarted_with_backoff_and_logged(bus: Bus, store: Store) -> None:
    actor, stop = Crashy(), asyncio.Event()
    supervisor = Supervisor(bus, store, [actor], RuntimeOptions(host="t", heartbeat_interval_s=60))
    with structlog.testing.capture_logs() as logged:
        task = asyncio.create_task(supervisor.run(stop))
        await eventually(lambda: actor.ticks >= 4)
        stop.set()
        await asyncio.wait_for(task, 20)
    crashes = [e for e in logged if e["event"] == "task.crashed"]
    assert [c["task"] for c in crashes] == ["tick:crashy", "tick:crashy"]
    assert all(c["restart_in_s"] > 0 for c in crashes)


async def test_stop_finishes_in_flight_work_and_flushes_the_outbox(bus: Bus, store: Store) -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(
        bus, store, [Crashy()], RuntimeOptions(host="t", heartbeat_interval_s=60, outbox_poll_s=30)
    )
    task = asyncio.create_task(supervisor.run(stop))
    await asyncio.wait_for(supervisor.ready.wait(), 10)
    relay = supervisor.relay
    assert relay is not None
    async with store.unit(source="test") as uow:
        for n in range(50):
            await uow.emit(Pinged(stream=f"s{n}", n=n))
    stop.set()
    await asyncio.wait_for(task, 20)
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert relay.published >= 50


class TickingAgent(Actor):
    """An agent (no database) whose tick reports something, like a compute agent's resources."""

    name: ClassVar[str] = "ticking-agent"
    tick_interval: ClassVar[float] = 0.05

    async def tick(self, ctx: Context) -> None:
        await ctx.emit(Pinged(stream="tick", n=1))


class PingCollector(Actor):
    name: ClassVar[str] = "ping-collector"

    def __init__(self) -> None:
        self.seen: list[Pinged] = []

    @handles(Pinged)
    async def collect(self, msg: Pinged, ctx: Context) -> None:
        self.seen.append(msg)


async def test_an_agents_tick_publishes_without_a_database(bus: Bus) -> None:
    collector = PingCollector()
    options = RuntimeOptions(host="agent-host", heartbeat_interval_s=60)
    agent = Supervisor(bus, None, [TickingAgent(), collector], options)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: len(collector.seen) >= 2, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert all(p.stream == "tick" for p in collector.seen)
