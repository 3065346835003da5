"""The service registry: heartbeats mark services up; silence marks them down within the window."""

from __future__ import annotations

import asyncio

from cloud.registry import ServiceRegistry
from cloud.runtime.actor import Actor, Context, handles
from cloud.runtime.bus import Bus
from cloud.runtime.supervisor import RuntimeOptions, Supervisor
from cloud.store.db import Store
from tests.conftest import eventually
from tests.messages import Pinged


class Worker(Actor):
    name = "worker"

    @handles(Pinged)
    async def ignore(self, msg: Pinged, ctx: Context) -> None:
        return None

    def readiness(self) -> dict[str, bool]:
        return {"consuming": True, "hypervisor": False}


class FastRegistry(ServiceRegistry):
    tick_interval = 0.1


async def test_stopped_actor_is_reported_down_within_its_window(bus: Bus, store: Store) -> None:
    window = 1.0
    registry_stop, worker_stop = asyncio.Event(), asyncio.Event()
    fast = RuntimeOptions(host="node-a", heartbeat_interval_s=0.2)
    registry = Supervisor(bus, store, [FastRegistry(down_after_s=window)], fast)
    worker = Supervisor(
        bus, None, [Worker()], RuntimeOptions(host="node-b", heartbeat_interval_s=0.2)
    )
    tasks = [asyncio.create_task(registry.run(registry_stop))]
    await asyncio.wait_for(registry.ready.wait(), 10)
    tasks.append(asyncio.create_task(worker.run(worker_stop)))
    try:
        await eventually(lambda: _state(store, "node-b/aiostack-worker", "up"))
        readiness = await store.pool.fetchval(
            "SELECT readiness::text FROM services WHERE service_id = 'node-b/aiostack-worker'"
        )
        assert '"hypervisor": false' in readiness
        worker_stop.set()
        await asyncio.wait_for(tasks[1], 10)
        stopped_at = asyncio.get_running_loop().time()
        await eventually(lambda: _state(store, "node-b/aiostack-worker", "down"), timeout=5)
        took = asyncio.get_running_loop().time() - stopped_at
        # window + one tick + one heartbeat interval of slack, well inside 2x the window
        assert took < window * 2, f"marked down after {took:.2f}s"
        kinds = [
            r["kind"]
            for r in await store.pool.fetch(
                "SELECT kind FROM events WHERE stream_id = 'service:node-b/aiostack-worker' ORDER BY seq"
            )
        ]
        assert kinds == ["service.marked_up", "service.marked_down"]
        assert await _state(store, "node-a/aiostack-registry", "up"), "the registry itself beats"
    finally:
        registry_stop.set()
        worker_stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)


async def _state(store: Store, service_id: str, state: str) -> bool:
    got = await store.pool.fetchval("SELECT state FROM services WHERE service_id = $1", service_id)
    return bool(got == state)
