"""Many fake compute hosts behind one consumer; publish-only reports; the driver choice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import pytest
import structlog

from agents.compute.base import WhenHypervisorAnswers
from agents.compute.choice import DriverChoice, DriverUnavailable, choose_driver
from agents.compute.driver import InstanceInfo, InstanceSpec, PowerState
from agents.compute.fake import FakeDriver
from agents.compute.fleet import ComputeFleet, build_fleet, host_names
from cloud.conductor.actor import Conductor
from cloud.config import Settings
from cloud.node import make_conductor, runtime_options
from cloud.runtime.actor import Context
from cloud.runtime.bus import COMMANDS, Bus, RawMessage, envelope_headers
from cloud.runtime.clock import SystemClock
from cloud.runtime.consumer import ConsumerOptions, PublishAfterSuccess
from cloud.scheduler.actor import Scheduler
from cloud.store.db import Store
from schemas import Envelope, encode
from schemas.compute import DestroyInstance, SpawnInstance
from tests.compute.test_build_saga import TINY, boot, instance, status_is
from tests.conftest import eventually, quick_options, running_supervisor
from tests.test_cli import cli

REPORTS = frozenset({"compute.host.state_reported", "compute.hosts.state_reported"})


class QuickFleet(ComputeFleet):
    tick_interval: ClassVar[float] = 0.05


def quick_fleet(count: int, **driver: object) -> ComputeFleet:
    fleet = build_fleet(
        "node", count, lambda _h: FakeDriver(vcpus=2, ram_mb=2048, **driver), report_interval_s=0.1
    )  # type: ignore[arg-type]
    return QuickFleet(fleet.base_host, fleet.agents, report_interval_s=0.1)


@asynccontextmanager
async def running(bus: Bus, store: Store, fleet: ComputeFleet) -> AsyncIterator[None]:
    consumer = ConsumerOptions(publish_only=REPORTS)
    async with (
        running_supervisor(bus, store, [fleet], quick_options(host="node", consumer=consumer)),
        running_supervisor(
            bus,
            store,
            [Scheduler(), Conductor()],
            quick_options(timer_poll_s=0.1, consumer=consumer),
        ),
    ):
        await eventually(
            lambda: store.pool.fetchval("SELECT count(*) = $1 FROM cmp_hosts", len(fleet.agents)),
            timeout=20,
        )
        yield


def test_host_names_derive_from_the_node_name() -> None:
    assert host_names("box", 1) == ["box"]
    assert host_names("box", 3) == ["box-1", "box-2", "box-3"]
    assert host_names("box", 1000)[:2] == ["box-0001", "box-0002"]
    assert host_names("box", 1000)[-1] == "box-1000"


def test_a_fleet_binds_every_host_on_one_queue() -> None:
    fleet = quick_fleet(3)
    assert fleet.queue == "compute.node"
    assert [b.pattern for b in fleet.bindings()] == [
        "compute.node-1",
        "compute.node-2",
        "compute.node-3",
    ]
    spawn = SpawnInstance(instance_id="x", name="x", flavor=TINY, image_ref="i")
    handler = fleet.route(spawn, "compute.node-2")
    assert isinstance(handler, WhenHypervisorAnswers) and handler.agent is fleet.agents[1]
    assert fleet.route(spawn, "compute.elsewhere") is None
    assert fleet.route(DestroyInstance(instance_id="x"), "compute.node-3") is not None
    with pytest.raises(ValueError):
        ComputeFleet("n", [fleet.agents[0], fleet.agents[0]])


async def test_a_lone_host_reports_once_per_interval_and_its_idle_ticks_are_quiet() -> None:
    fleet = build_fleet("solo", 1, lambda _: FakeDriver(), report_interval_s=5.0)
    clock = SystemClock()
    buffer = PublishAfterSuccess("test", clock, None)  # what an agent's tick emits into
    for _ in range(10):  # two report intervals of one-second ticks
        await fleet.tick(Context(None, buffer, clock, structlog.get_logger(), None))
    assert len(buffer.messages) == 2


async def test_a_power_change_the_driver_notices_is_reported_at_the_next_tick() -> None:
    driver = FakeDriver()
    fleet = build_fleet("solo", 1, lambda _: driver, report_interval_s=5.0)
    await driver.spawn(InstanceSpec("vm", "vm", TINY, "img"))
    clock = SystemClock()
    buffer = PublishAfterSuccess("test", clock, None)
    for _ in range(2):  # the slot's report, then a quiet tick
        await fleet.tick(Context(None, buffer, clock, structlog.get_logger(), None))
    assert len(buffer.messages) == 1
    driver.set_power_state("vm", PowerState.SHUTDOWN)  # the guest powered itself off
    await fleet.tick(Context(None, buffer, clock, structlog.get_logger(), None))
    assert len(buffer.messages) == 2, "the change waited for the host's next slot"
    await fleet.tick(Context(None, buffer, clock, structlog.get_logger(), None))
    assert len(buffer.messages) == 2  # once


async def test_servers_spread_over_a_fleet_and_land_on_their_hosts_driver(
    bus: Bus, store: Store
) -> None:
    fleet = quick_fleet(3)
    async with running(bus, store, fleet):
        servers = [await boot(store) for _ in range(6)]
        for server in servers:
            await eventually(lambda s=server: status_is(store, s, "ACTIVE"), timeout=20)  # type: ignore[misc]
        for server in servers:
            host = (await instance(store, server))["host"]
            agent = fleet.agent(host)
            assert agent is not None and server in await agent.driver.list_instances()
        placed = {(await instance(store, s))["host"] for s in servers}
        assert len(placed) > 1  # two vCPUs per host: six tiny servers need all three hosts
        # Reports are published only: hosts are registered, the event log holds none of them.
        stored = await store.pool.fetchval(
            "SELECT count(*) FROM events WHERE kind = ANY($1::text[])", list(REPORTS)
        )
        assert stored == 0
        # The hosts' power states reach the database through the batched reports too.
        server = servers[0]
        agent = fleet.agent((await instance(store, server))["host"])
        assert agent is not None and isinstance(agent.driver, FakeDriver)
        agent.driver.set_power_state(server, PowerState.SHUTDOWN)
        await eventually(lambda: status_is(store, server, "SHUTOFF"), timeout=20)


async def test_reports_are_stored_when_not_publish_only(store: Store) -> None:
    from cloud.runtime.inproc import InProcBus

    bus = InProcBus()
    await bus.start()
    fleet = quick_fleet(2)
    try:
        async with (
            running_supervisor(bus, store, [fleet], quick_options(host="node")),
            running_supervisor(bus, store, [Conductor()], quick_options()),
        ):
            await eventually(
                lambda: store.pool.fetchval(
                    "SELECT count(*) > 0 FROM events WHERE kind = 'compute.hosts.state_reported'"
                )
            )
    finally:
        await bus.close()


def test_driver_choice() -> None:
    assert choose_driver("fake", "test:///default").driver == "fake"
    assert choose_driver("auto", "test:///default") == DriverChoice(
        "libvirt", "auto: libvirt answers at test:///default"
    )
    absent = choose_driver("auto", "qemu+unix:///system?socket=/nonexistent/sock")
    assert absent.driver == "fake" and "nonexistent" in absent.reason
    # Asked for by name, libvirt is taken even when its daemon is down: the agent waits for it.
    assert choose_driver("libvirt", "qemu+unix:///system?socket=/nonexistent/sock").driver == (
        "libvirt"
    )
    with pytest.raises(DriverUnavailable, match="unknown compute driver"):
        choose_driver("xen", "test:///default")


def test_run_compute_refuses_an_instances_dir_qemu_cannot_reach(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    # A subprocess, as users run it: the CLI configures logging for the whole process.
    result = cli(
        "run",
        "compute",
        "--compute-driver",
        "libvirt",
        "--state-dir",
        str(tmp_path),
        env={
            "AIOSTACK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "AIOSTACK_INSTANCES_DIR": str(private / "instances"),
        },
    )
    assert result.returncode != 0
    assert f"{private} is not searchable by other users" in result.stdout + result.stderr


def test_settings_reach_the_conductor_and_the_runtime() -> None:
    settings = Settings(
        conductor_spawn_deadline_s=7,
        conductor_step_deadlines={"rebooting": 3},
        reconcile_destroy_orphans=True,
        host=f"h-{uuid.uuid4().hex[:4]}",
    )
    conductor = make_conductor(settings)
    assert conductor.deadline_of("spawning") == 7 and conductor.deadline_of("rebooting") == 3
    assert conductor.destroy_orphans is True
    assert "compute.host.state_reported" in runtime_options(settings).consumer.publish_only


class GatedDriver(FakeDriver):
    """Spawns wait until ``expected`` spawns are in flight at once (or give up after a while)."""

    inflight: ClassVar[int] = 0
    most: ClassVar[int] = 0
    expected: ClassVar[int] = 3

    async def spawn(self, spec: InstanceSpec) -> InstanceInfo:
        cls = GatedDriver
        cls.inflight += 1
        cls.most = max(cls.most, cls.inflight)
        try:
            for _ in range(200):
                if cls.most >= cls.expected:
                    break
                await asyncio.sleep(0.01)
            return await super().spawn(spec)
        finally:
            cls.inflight -= 1


async def test_a_slow_host_does_not_hold_up_the_others(store: Store) -> None:
    from cloud.runtime.inproc import InProcBus

    GatedDriver.inflight = GatedDriver.most = 0
    bus = InProcBus()
    await bus.start()
    built = build_fleet("node", 3, lambda _h: GatedDriver())
    fleet = QuickFleet(built.base_host, built.agents)
    try:
        async with running_supervisor(bus, store, [fleet], quick_options(host="node")):
            spawns = [
                RawMessage(COMMANDS, f"compute.node-{i}", encode(m), envelope_headers(e))
                for i in (1, 2, 3)
                for m in [
                    SpawnInstance(instance_id=f"vm-{i}", name="x", flavor=TINY, image_ref="i")
                ]
                for e in [Envelope.first(m, "test")]
            ]
            await bus.publish(spawns)
            await eventually(
                lambda: all(f"vm-{i}" in a.driver.instances for i, a in enumerate(fleet.agents, 1))  # type: ignore[attr-defined]
            )
    finally:
        await bus.close()
    assert GatedDriver.most == 3, "the hosts' spawns ran one after another"
