"""The scheduler actor over a real PostgreSQL with several hosts in ``cmp_hosts``.

Server groups, availability zones from aggregates, and rescheduling a build that failed on its
host (the conductor gives the claim back; the scheduler excludes the hosts already tried).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from agents.compute.agent import ComputeAgent
from agents.compute.fake import FakeDriver
from cloud.compute import boot_policy
from cloud.compute.api import server_store
from cloud.conductor.actor import Conductor
from cloud.runtime.bus import Bus
from cloud.runtime.inproc import InProcBus
from cloud.scheduler.actor import Scheduler, SchedulerConfig
from cloud.store.db import Store
from schemas.compute import FlavorSpec
from tests.conftest import eventually, quick_options, running_supervisor

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)


async def add_host(store: Store, host: str, *, vcpus: int = 4) -> None:
    await store.pool.execute(
        """INSERT INTO cmp_hosts (host, vcpus, ram_mb, disk_gb, cpu_ratio, ram_ratio,
                                  last_report_at)
           VALUES ($1, $2, 4096, 100, 1.0, 1.0, now())""",
        host,
        vcpus,
    )


async def boot(
    store: Store, *, hints: dict[str, Any] | None = None, zone: str | None = None
) -> str:
    server_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": server_id,
        "name": "vm",
        "project_id": "p1",
        "user_id": "u1",
        "image_ref": "img",
        "metadata": {},
        "key_name": None,
        "user_data": None,
        "availability_zone": zone,
        "idempotency_key": None,
        "scheduler_hints": hints or {},
    }
    async with store.unit(source="test") as uow:
        await boot_policy.admit(
            uow.conn,
            project_id="p1",
            user_id="u1",
            flavor=TINY,
            min_count=1,
            max_count=1,
            metadata_items=0,
            hints=hints or {},
        )
        await server_store.insert(uow, values, TINY)
        await boot_policy.admitted(
            uow.conn, project_id="p1", instance_ids=[server_id], hints=hints or {}
        )
    return server_id


async def instance(store: Store, server: str) -> dict[str, Any]:
    row = await store.pool.fetchrow(
        "SELECT status, host, availability_zone, fault::text AS fault FROM cmp_instances"
        " WHERE id = $1",
        server,
    )
    assert row is not None
    return dict(row)


async def settled(store: Store, server: str) -> bool:
    return (await instance(store, server))["status"] in ("ACTIVE", "ERROR")


@asynccontextmanager
async def cloud(
    bus: Bus,
    store: Store,
    drivers: dict[str, FakeDriver],
    scheduler: Scheduler | None = None,
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for host, driver in drivers.items():
            await stack.enter_async_context(
                running_supervisor(
                    bus, None, [ComputeAgent(host, driver)], quick_options(host=host)
                )
            )
        actors = [scheduler or Scheduler(), Conductor()]
        await stack.enter_async_context(
            running_supervisor(bus, store, actors, quick_options(timer_poll_s=0.1))
        )
        yield


@asynccontextmanager
async def inproc() -> AsyncIterator[Bus]:
    bus = InProcBus()
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


async def group(store: Store, policy: str, rules: dict[str, int] | None = None) -> str:
    group_id = str(uuid.uuid4())
    await store.pool.execute(
        """INSERT INTO cmp_server_groups (id, name, project_id, user_id, policy, rules)
           VALUES ($1, 'g', 'p1', 'u1', $2, $3::jsonb)""",
        group_id,
        policy,
        json.dumps(rules or {}),
    )
    return group_id


async def boot_all(store: Store, count: int, **kw: Any) -> list[str]:
    servers = [await boot(store, **kw) for _ in range(count)]
    for server in servers:
        await eventually(lambda s=server: settled(store, s), timeout=20)
    return servers


def hosts_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(r["host"] for r in rows if r["status"] == "ACTIVE")


async def test_anti_affinity_spreads_members_and_fails_when_hosts_run_out(store: Store) -> None:
    for name in ("node-1", "node-2"):
        await add_host(store, name)
    gid = await group(store, "anti-affinity")
    async with inproc() as bus, cloud(bus, store, {"node-1": FakeDriver(), "node-2": FakeDriver()}):
        servers = await boot_all(store, 3, hints={"group": gid})
    rows = [await instance(store, s) for s in servers]
    assert hosts_of(rows) == ["node-1", "node-2"]
    failed = [r for r in rows if r["status"] == "ERROR"]
    assert len(failed) == 1
    fault = json.loads(failed[0]["fault"])
    assert "ServerGroupAntiAffinityFilter removed 2" in fault["message"]
    assert await boot_policy.server_groups_of(store.pool, servers[0]) == [gid]  # type: ignore[arg-type]


async def test_anti_affinity_with_max_server_per_host(store: Store) -> None:
    await add_host(store, "node-1")
    gid = await group(store, "anti-affinity", {"max_server_per_host": 2})
    async with inproc() as bus, cloud(bus, store, {"node-1": FakeDriver()}):
        servers = await boot_all(store, 3, hints={"group": gid})
    statuses = sorted([(await instance(store, s))["status"] for s in servers])
    assert statuses == ["ACTIVE", "ACTIVE", "ERROR"]


async def test_affinity_keeps_members_together(store: Store) -> None:
    for name in ("node-1", "node-2", "node-3"):
        await add_host(store, name)
    gid = await group(store, "affinity")
    drivers = {n: FakeDriver() for n in ("node-1", "node-2", "node-3")}
    async with inproc() as bus, cloud(bus, store, drivers):
        servers = await boot_all(store, 3, hints={"group": gid})
    rows = [await instance(store, s) for s in servers]
    assert len(set(hosts_of(rows))) == 1 and len(hosts_of(rows)) == 3


async def test_zone_of_an_aggregate_is_honoured_and_shown(store: Store) -> None:
    for name in ("node-1", "node-2"):
        await add_host(store, name)
    agg = await store.pool.fetchval(
        """INSERT INTO cmp_aggregates (uuid, name, metadata)
           VALUES ($1, 'fast', '{"availability_zone": "az1"}') RETURNING id""",
        str(uuid.uuid4()),
    )
    await store.pool.execute(
        "INSERT INTO cmp_aggregate_hosts (aggregate_id, host) VALUES ($1, 'node-2')", agg
    )
    drivers = {"node-1": FakeDriver(), "node-2": FakeDriver()}
    async with inproc() as bus, cloud(bus, store, drivers):
        zoned = await boot_all(store, 2, zone="az1")
        default = await boot_all(store, 1, zone="nova")
        missing = await boot_all(store, 1, zone="nowhere")
    for server in zoned:
        row = await instance(store, server)
        assert (row["status"], row["host"], row["availability_zone"]) == ("ACTIVE", "node-2", "az1")
    row = await instance(store, default[0])
    assert (row["host"], row["availability_zone"]) == ("node-1", "nova")
    fault = json.loads((await instance(store, missing[0]))["fault"])
    assert "AvailabilityZoneFilter removed 2" in fault["message"]


async def test_a_failed_build_is_rescheduled_on_another_host(store: Store) -> None:
    for name in ("node-1", "node-2"):
        await add_host(store, name)
    # node-1 weighs best (the most free RAM) and fails every spawn.
    await store.pool.execute("UPDATE cmp_hosts SET ram_mb_used = 1024 WHERE host = 'node-2'")
    drivers = {"node-1": FakeDriver(fail_spawn="disk on fire"), "node-2": FakeDriver()}
    async with inproc() as bus, cloud(bus, store, drivers):
        [server] = await boot_all(store, 1)
    row = await instance(store, server)
    assert (row["status"], row["host"]) == ("ACTIVE", "node-2")
    tried = await store.pool.fetch(
        "SELECT host, error FROM cmp_schedule_attempts WHERE instance_id = $1 ORDER BY attempt",
        server,
    )
    assert [(t["host"], t["error"]) for t in tried] == [
        ("node-1", "disk on fire"),
        ("node-2", None),
    ]
    used = await store.pool.fetch("SELECT host, vcpus_used FROM cmp_hosts ORDER BY host")
    assert [(u["host"], u["vcpus_used"]) for u in used] == [("node-1", 0), ("node-2", 1)]


async def test_attempts_run_out_and_the_fault_lists_the_hosts_tried(store: Store) -> None:
    names = ("node-1", "node-2", "node-3")
    for name in names:
        await add_host(store, name)
    drivers = {n: FakeDriver(fail_spawn=f"{n} broken") for n in names}
    scheduler = Scheduler(config=SchedulerConfig(max_attempts=2))
    async with inproc() as bus, cloud(bus, store, drivers, scheduler):
        [server] = await boot_all(store, 1)
    row = await instance(store, server)
    assert row["status"] == "ERROR" and row["host"] is None
    message = json.loads(row["fault"])["message"]
    assert "Exceeded maximum number of retries" in message
    assert "node-1 (node-1 broken)" in message and "node-2 (node-2 broken)" in message
    assert "node-3" not in message
    assert await store.pool.fetchval("SELECT count(*) FROM cmp_claims") == 0
    assert await store.pool.fetchval("SELECT sum(vcpus_used) FROM cmp_hosts") == 0
