"""The build saga over both buses: requested → scheduled → spawned → ACTIVE, failures and deadlines.

The control plane (scheduler, conductor) runs with the database; the compute agent runs in its own
supervisor without one, as on a real compute node.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar

from agents.compute.agent import ComputeAgent, address_of
from agents.compute.fake import FakeDriver
from cloud.compute.api import server_store
from cloud.conductor.actor import Conductor
from cloud.runtime.bus import Bus
from cloud.scheduler.actor import Scheduler, claim
from cloud.scheduler.filters import Request
from cloud.store.db import Store
from schemas.compute import FlavorSpec, StartInstance, StopInstance
from tests.conftest import eventually, quick_options, running_supervisor

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)


async def add_host(store: Store, host: str, *, vcpus: int = 4, ram_mb: int = 2048) -> None:
    await store.pool.execute(
        """INSERT INTO cmp_hosts (host, vcpus, ram_mb, disk_gb, cpu_ratio, ram_ratio,
                                  last_report_at)
           VALUES ($1, $2, $3, 100, 1.0, 1.0, now())""",
        host,
        vcpus,
        ram_mb,
    )


async def boot(store: Store, flavor: FlavorSpec = TINY) -> str:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "vm",
        "project_id": "p1",
        "user_id": "u1",
        "image_ref": "img",
        "metadata": {},
        "key_name": None,
        "user_data": None,
        "availability_zone": None,
        "idempotency_key": None,
    }
    async with store.unit(source="test") as uow:
        row = await server_store.insert(uow, values, flavor)
    return str(row["id"])


async def instance(store: Store, instance_id: str) -> dict[str, Any]:
    row = await store.pool.fetchrow(
        """SELECT vm_state, task_state, status, host, power_state, fault::text AS fault,
                  deleted_at FROM cmp_instances WHERE id = $1""",
        instance_id,
    )
    assert row is not None
    return dict(row)


async def used(store: Store, host: str) -> tuple[int, int, int]:
    row = await store.pool.fetchrow(
        "SELECT vcpus_used, ram_mb_used, disk_gb_used FROM cmp_hosts WHERE host = $1", host
    )
    assert row is not None
    return row["vcpus_used"], row["ram_mb_used"], row["disk_gb_used"]


async def status_is(store: Store, instance_id: str, status: str) -> bool:
    return bool((await instance(store, instance_id))["status"] == status)


@asynccontextmanager
async def cloud(
    bus: Bus, store: Store, driver: FakeDriver, conductor: Conductor | None = None
) -> AsyncIterator[None]:
    agent = ComputeAgent("node-1", driver)
    async with (
        running_supervisor(bus, None, [agent], quick_options(host="node-1")),
        running_supervisor(
            bus, store, [Scheduler(), conductor or Conductor()], quick_options(timer_poll_s=0.1)
        ),
    ):
        yield


async def test_boot_becomes_active_and_delete_releases_everything(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with cloud(bus, store, driver):
        server = await boot(store)
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        got = await instance(store, server)
        assert (got["vm_state"], got["task_state"], got["host"]) == ("active", None, "node-1")
        assert got["power_state"] == 1
        assert server in driver.instances
        assert await used(store, "node-1") == (1, 512, 1)

        async with store.unit(source="test") as uow:
            assert await server_store.request_delete(uow, server, "p1")
        await eventually(lambda: _deleted(store, server))
        assert driver.instances == {}
        assert await used(store, "node-1") == (0, 0, 0)
    kinds = await _kinds(store, server)
    assert kinds[:2] == ["compute.instance.requested", "compute.instance.scheduled"]
    assert "compute.instance.activated" in kinds and kinds[-1] == "compute.instance.deleted"


async def test_no_valid_host_is_an_error_with_per_filter_counts(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1", ram_mb=256)
    await add_host(store, "node-2", vcpus=0)
    async with cloud(bus, store, FakeDriver()):
        server = await boot(store)
        await eventually(lambda: status_is(store, server, "ERROR"))
    fault = json.loads((await instance(store, server))["fault"])
    assert fault["code"] == 500
    assert fault["message"].startswith("No valid host was found. 2 host(s) considered")
    assert json.loads(fault["details"])["eliminated"]["RamFilter"] == 1
    assert json.loads(fault["details"])["eliminated"]["CoreFilter"] == 1
    body = await store.pool.fetchval(
        "SELECT body FROM events WHERE stream_id = $1 AND kind = $2",
        f"instance:{server}",
        "compute.instance.schedule_failed",
    )
    failed = json.loads(body)
    assert failed["hosts_considered"] == 2
    assert failed["eliminated"]["RamFilter"] == 1


async def test_a_missed_spawn_deadline_is_an_error_and_releases_the_claim(
    bus: Bus, store: Store
) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver(spawn_latency_s=1.5)
    async with cloud(bus, store, driver, Conductor(spawn_deadline_s=0.3)):
        server = await boot(store)
        await eventually(lambda: status_is(store, server, "ERROR"))
        got = await instance(store, server)
        fault = json.loads(got["fault"])
        assert "timed out in step spawning" in fault["message"]
        assert json.loads(fault["details"])["host"] == "node-1"
        assert await used(store, "node-1") == (0, 0, 0)
        assert await store.pool.fetchval("SELECT count(*) FROM cmp_claims") == 0
        # The late spawn is undone: the host must not keep an instance the cloud gave up on.
        await eventually(lambda: driver.instances == {}, timeout=10)
        await asyncio.sleep(0.2)
        assert await status_is(store, server, "ERROR")


async def test_a_failed_spawn_is_an_error_naming_the_host(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    async with cloud(bus, store, FakeDriver(fail_spawn="no hypervisor today")):
        server = await boot(store)
        await eventually(lambda: status_is(store, server, "ERROR"))
    fault = json.loads((await instance(store, server))["fault"])
    assert "node-1" in fault["message"] and "no hypervisor today" in fault["message"]
    assert await used(store, "node-1") == (0, 0, 0)


async def test_delete_wins_over_an_inflight_build(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver(spawn_latency_s=0.3)
    async with cloud(bus, store, driver):
        server = await boot(store)
        async with store.unit(source="test") as uow:
            assert await server_store.request_delete(uow, server, "p1")
        await eventually(lambda: _deleted(store, server))
        await asyncio.sleep(0.5)  # a spawn that was already under way is destroyed too
        await eventually(lambda: driver.instances == {})
        assert await used(store, "node-1") == (0, 0, 0)


async def power(
    store: Store, server: str, task: str, command: StopInstance | StartInstance
) -> None:
    """What ``os-stop``/``os-start`` write: the task state and the command to the host."""
    async with store.unit(source="test") as uow:
        await uow.conn.execute(
            "UPDATE cmp_instances SET task_state = $2 WHERE id = $1", server, task
        )
        await uow.emit(command, to=address_of("node-1"))


async def test_stop_and_start_follow_the_hosts_power_state(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with cloud(bus, store, driver):
        server = await boot(store)
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        await power(store, server, "powering-off", StopInstance(instance_id=server))
        await eventually(lambda: status_is(store, server, "SHUTOFF"))
        got = await instance(store, server)
        assert (got["vm_state"], got["task_state"], got["power_state"]) == ("stopped", None, 4)
        await power(store, server, "powering-on", StartInstance(instance_id=server))
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        assert (await instance(store, server))["power_state"] == 1


class ReportingAgent(ComputeAgent):
    tick_interval: ClassVar[float] = 0.1


async def test_agent_reports_register_the_host(bus: Bus, store: Store) -> None:
    agent = ReportingAgent("node-9", FakeDriver(vcpus=8, ram_mb=4096, disk_gb=40))
    async with running_supervisor(bus, store, [Conductor(), agent], quick_options()):
        await eventually(
            lambda: store.pool.fetchval("SELECT count(*) = 1 FROM cmp_hosts WHERE host = 'node-9'")
        )
    row = await store.pool.fetchrow("SELECT * FROM cmp_hosts WHERE host = 'node-9'")
    assert row is not None
    assert (row["vcpus"], row["ram_mb"], row["disk_gb"]) == (8, 4096, 40)
    assert row["hypervisor_type"] == "fake" and row["last_report_at"] is not None


async def test_two_concurrent_claims_never_overcommit(store: Store) -> None:
    await add_host(store, "node-1", vcpus=1)
    servers = [await boot(store), await boot(store)]
    req = Request(vcpus=1, ram_mb=512, disk_gb=1, now=datetime.now(UTC))

    async def try_claim(server: str) -> bool:
        async with store.pool.acquire() as conn, conn.transaction():
            won: bool = await claim(conn, server, "node-1", req)
            return won

    results = await asyncio.gather(*(try_claim(s) for s in servers))
    assert sorted(results) == [False, True]
    assert await used(store, "node-1") == (1, 512, 1)
    assert await store.pool.fetchval("SELECT count(*) FROM cmp_claims") == 1


async def _deleted(store: Store, instance_id: str) -> bool:
    return bool((await instance(store, instance_id))["deleted_at"] is not None)


async def _kinds(store: Store, instance_id: str) -> list[str]:
    rows = await store.pool.fetch(
        "SELECT kind FROM events WHERE stream_id = $1 ORDER BY seq", f"instance:{instance_id}"
    )
    return [r["kind"] for r in rows]
