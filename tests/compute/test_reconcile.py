"""Host synchronisation: power-state drift, instances gone from their host, orphans."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import pytest

from agents.compute.driver import PowerState
from agents.compute.fake import FakeDriver
from cloud.conductor import states
from cloud.conductor.actor import Conductor
from cloud.conductor.reconcile import sync_decision
from cloud.runtime.consumer import ConsumerOptions
from cloud.runtime.inproc import InProcBus
from cloud.scheduler.actor import Scheduler
from cloud.store.db import Store
from tests.compute.test_build_saga import boot, instance, status_is
from tests.compute.test_fleet import REPORTS, quick_fleet
from tests.conftest import eventually, quick_options, running_supervisor


@pytest.mark.parametrize(
    ("vm_state", "power", "expected"),
    [
        (states.ACTIVE, 1, (None, False)),
        (states.ACTIVE, 4, (states.STOPPED, False)),
        (states.ACTIVE, 6, (states.STOPPED, False)),
        (states.ACTIVE, 7, (states.STOPPED, False)),
        (states.ACTIVE, 3, (None, False)),  # paused unexpectedly: Nova ignores it
        (states.ACTIVE, 0, (None, False)),  # not found: Nova ignores it (power state recorded)
        (states.STOPPED, 1, (None, True)),
        (states.STOPPED, 4, (None, False)),
        (states.STOPPED, 0, (None, False)),
        ("paused", 4, (states.STOPPED, False)),
        (states.ERROR, 4, (None, False)),
        (states.BUILDING, 4, (None, False)),
    ],
)
def test_sync_decision_follows_nova(
    vm_state: str, power: int, expected: tuple[str | None, bool]
) -> None:
    assert sync_decision(vm_state, power) == expected


class Cloud:
    def __init__(self, store: Store, driver: FakeDriver, conductor: Conductor) -> None:
        self.store, self.driver, self.conductor = store, driver, conductor

    async def active_server(self) -> str:
        server = await boot(self.store)
        await eventually(lambda: status_is(self.store, server, "ACTIVE"), timeout=20)
        return server

    async def reports_after(self, moment: datetime, count: int = 2) -> None:
        """Wait until the host reported ``count`` more times after ``moment`` (roughly)."""
        for _ in range(count):
            await eventually(
                lambda since=moment: self.store.pool.fetchval(
                    "SELECT last_report_at > $1 FROM cmp_hosts WHERE host = 'node'", since
                )
            )
            moment = await self.store.pool.fetchval(
                "SELECT last_report_at FROM cmp_hosts WHERE host = 'node'"
            )

    async def kinds(self, kind: str) -> int:
        return int(
            await self.store.pool.fetchval("SELECT count(*) FROM events WHERE kind = $1", kind)
        )


@asynccontextmanager
async def cloud(store: Store, *, destroy_orphans: bool = False) -> AsyncIterator[Cloud]:
    bus = InProcBus()
    await bus.start()
    fleet = quick_fleet(1)
    driver = fleet.agents[0].driver
    assert isinstance(driver, FakeDriver)
    conductor = Conductor(power_deadline_s=5, destroy_orphans=destroy_orphans)
    consumer = ConsumerOptions(publish_only=REPORTS)
    try:
        async with (
            running_supervisor(bus, store, [fleet], quick_options(host="node", consumer=consumer)),
            running_supervisor(
                bus,
                store,
                [Scheduler(), conductor],
                quick_options(timer_poll_s=0.1, consumer=consumer),
            ),
        ):
            await eventually(lambda: store.pool.fetchval("SELECT count(*) = 1 FROM cmp_hosts"))
            yield Cloud(store, driver, conductor)
    finally:
        await bus.close()


async def test_an_active_instance_found_shut_down_becomes_shutoff(store: Store) -> None:
    async with cloud(store) as c:
        server = await c.active_server()
        c.driver.set_power_state(server, PowerState.SHUTDOWN)
        await eventually(lambda: status_is(store, server, "SHUTOFF"))
        got = await instance(store, server)
        assert (got["vm_state"], got["task_state"], got["power_state"]) == ("stopped", None, 4)
        assert await c.kinds("compute.instance.power_synced") == 1


async def test_a_stopped_instance_found_running_is_stopped_again(store: Store) -> None:
    async with cloud(store) as c:
        server = await c.active_server()
        c.driver.set_power_state(server, PowerState.SHUTDOWN)
        await eventually(lambda: status_is(store, server, "SHUTOFF"))
        c.driver.set_power_state(server, PowerState.RUNNING)  # someone started it behind our back
        await eventually(lambda: c.driver.instances[server].power_state == PowerState.SHUTDOWN)
        await eventually(
            lambda: store.pool.fetchval(
                "SELECT task_state IS NULL AND power_state = 4 FROM cmp_instances WHERE id = $1",
                server,
            )
        )
        assert (await instance(store, server))["status"] == "SHUTOFF"


async def test_an_instance_missing_from_its_host_keeps_its_state_with_nostate(
    store: Store,
) -> None:
    async with cloud(store) as c:
        server = await c.active_server()
        del c.driver.instances[server]
        await eventually(
            lambda: store.pool.fetchval(
                "SELECT power_state = 0 FROM cmp_instances WHERE id = $1", server
            )
        )
        got = await instance(store, server)
        assert (got["status"], got["vm_state"]) == ("ACTIVE", "active")


async def test_an_instance_with_a_task_in_progress_is_left_alone(store: Store) -> None:
    async with cloud(store) as c:
        server = await c.active_server()
        await store.pool.execute(
            "UPDATE cmp_instances SET task_state = 'powering-on' WHERE id = $1", server
        )
        c.driver.set_power_state(server, PowerState.SHUTDOWN)
        moment = await store.pool.fetchval("SELECT now()")
        await c.reports_after(moment, count=3)
        got = await instance(store, server)
        assert (got["vm_state"], got["power_state"]) == ("active", 1)


async def test_an_orphan_is_reported_once_and_kept_by_default(store: Store) -> None:
    async with cloud(store) as c:
        c.driver.adopt("ghost-1")
        await eventually(lambda: c.kinds("compute.host.instance_orphaned"))
        moment = await store.pool.fetchval("SELECT now()")
        await c.reports_after(moment, count=3)
        assert await c.kinds("compute.host.instance_orphaned") == 1
        assert "ghost-1" in c.driver.instances
        body = await store.pool.fetchval(
            "SELECT body::text FROM events WHERE kind = 'compute.host.instance_orphaned'"
        )
        assert '"reason": "unknown"' in body and '"destroyed": false' in body


async def test_orphans_are_destroyed_when_the_setting_says_so(store: Store) -> None:
    async with cloud(store, destroy_orphans=True) as c:
        server = await c.active_server()
        # Deleted in the database behind the host's back (a forced delete whose destroy was lost).
        await store.pool.execute(
            "UPDATE cmp_instances SET deleted_at = now() - interval '1 minute',"
            " updated_at = now() - interval '1 minute' WHERE id = $1",
            server,
        )
        c.driver.adopt("ghost-2")
        await eventually(
            lambda: "ghost-2" not in c.driver.instances and server not in c.driver.instances
        )
        reasons = await store.pool.fetch(
            "SELECT body->>'reason' AS r FROM events WHERE kind = 'compute.host.instance_orphaned'"
        )
        assert sorted(r["r"] for r in reasons) == ["deleted", "unknown"]
