"""Durable timers: due by the injected clock, and they outlive the process that set them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from cloud.runtime.bus import Bus
from cloud.runtime.clock import ManualClock
from cloud.store.db import Store
from cloud.store.timers import TimerService
from tests.actors import COUNTERS_DDL, CounterActor
from tests.conftest import eventually, quick_options, running_supervisor
from tests.messages import Bump


async def test_timer_fires_only_when_due_by_the_clock(database: str) -> None:
    clock = ManualClock()
    store = await Store.open(database, migrate=False, clock=clock)
    try:
        async with store.unit(source="test") as uow:
            await uow.schedule(Bump(counter="t"), at=clock.now().replace(minute=5), key="k1")
        timers = TimerService(store)
        assert await timers.fire_due() == 0
        clock.advance(4 * 60)
        assert await timers.fire_due() == 0
        clock.advance(61)
        assert await timers.fire_due() == 1
        assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 1
        assert await timers.fire_due() == 0, "a timer fires once"
    finally:
        await store.close()


async def test_rescheduling_a_key_replaces_and_cancel_forgets(store: Store) -> None:
    now = store.clock.now()
    async with store.unit(source="test") as uow:
        await uow.schedule(Bump(counter="a"), at=now.replace(year=2099), key="deadline")
    async with store.unit(source="test") as uow:
        await uow.schedule(Bump(counter="b"), at=now.replace(year=2098), key="deadline")
    assert await store.pool.fetchval("SELECT count(*) FROM timers") == 1
    assert (await store.pool.fetchval("SELECT due_at FROM timers")).year == 2098
    async with store.unit(source="test") as uow:
        assert await uow.cancel_timer("deadline") is True
        assert await uow.cancel_timer("deadline") is False
    assert await store.pool.fetchval("SELECT count(*) FROM timers") == 0


SET_TIMER_AND_DIE = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from datetime import timedelta
    from cloud.store.db import Store
    from tests.messages import Bump

    async def main() -> None:
        store = await Store.open(sys.argv[1], migrate=False)
        async with store.unit(source="doomed") as uow:
            due = uow.clock.now() + timedelta(seconds=1)
            await uow.schedule(Bump(counter="deadline"), at=due, key="deadline-1")
        print("scheduled", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_deadline_fires_after_the_process_that_set_it_died(
    bus: Bus, store: Store, database: str
) -> None:
    await store.pool.execute(COUNTERS_DDL)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SET_TIMER_AND_DIE,
        database,
        stdout=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL and b"scheduled" in out

    options = quick_options(timer_poll_s=0.1)
    async with running_supervisor(bus, store, [CounterActor()], options):
        await eventually(lambda: _counter_is_one(store), timeout=15)
    assert await store.pool.fetchval("SELECT count(*) FROM timers") == 0


async def _counter_is_one(store: Store) -> bool:
    return bool(await store.pool.fetchval("SELECT value = 1 FROM counters WHERE name = 'deadline'"))
