"""The composition root: settings in, a running set of actors out.

Chooses the database (configured server, or a private one under the state dir) and the bus
(RabbitMQ, or in-process), says which in the log, and builds the actors by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from agents.compute.choice import DriverUnavailable, choose_driver
from agents.compute.driver import ComputeDriver
from agents.compute.fake import FakeDriver
from agents.compute.fleet import ComputeFleet, build_fleet
from cloud.conductor.actor import Conductor
from cloud.config import Settings, mask_url
from cloud.console.driver_address import fake_vnc_address
from cloud.console.proxy import ConsoleProxy
from cloud.gateway import Gateway, clouds_yaml_path
from cloud.registry import ServiceRegistry
from cloud.runtime.actor import Actor
from cloud.runtime.amqp import AmqpBus
from cloud.runtime.bus import Bus
from cloud.runtime.consumer import ConsumerOptions
from cloud.runtime.inproc import InProcBus
from cloud.runtime.supervisor import RuntimeOptions, Supervisor, stop_on_signals
from cloud.scheduler.actor import Scheduler
from cloud.store.db import Store
from cloud.store.embedded import EmbeddedPostgres

log = structlog.get_logger("aiostack.node")


def make_conductor(settings: Settings) -> Conductor:
    return Conductor(
        schedule_deadline_s=settings.conductor_schedule_deadline_s,
        spawn_deadline_s=settings.conductor_spawn_deadline_s,
        delete_deadline_s=settings.conductor_delete_deadline_s,
        power_deadline_s=settings.conductor_power_deadline_s,
        step_deadlines=settings.conductor_step_deadlines,
        destroy_orphans=settings.reconcile_destroy_orphans,
        shelved_offload_time=settings.shelved_offload_time,
    )


def make_libvirt_driver(settings: Settings) -> ComputeDriver:
    """The libvirt driver, fetching images with the agent's own cloud credentials.

    Imported here, not at the top: a node running the fake driver needs no libvirt library.
    """
    from agents.compute.drivers.image_cache import HttpImageSource
    from agents.compute.drivers.layout import check_instances_dir
    from agents.compute.drivers.libvirt import LibvirtDriver
    from agents.compute.service_auth import ServiceAuth

    instances_dir = settings.instances_dir.resolve()
    if settings.libvirt_uri.startswith("qemu") and "/system" in settings.libvirt_uri:
        problem = check_instances_dir(instances_dir)
        if problem is not None:
            raise DriverUnavailable(f"instances_dir {instances_dir}: {problem}")
    clouds_yaml = settings.compute_clouds_yaml or clouds_yaml_path(settings)
    return LibvirtDriver(
        instances_dir=instances_dir,
        image_source=HttpImageSource(ServiceAuth(clouds_yaml, settings.compute_auth_cloud)),
        uri=settings.libvirt_uri,
        virt_type=settings.libvirt_virt_type,
        domain_prefix=settings.libvirt_domain_prefix,
        shutdown_timeout_s=settings.libvirt_shutdown_timeout_s,
    )


def make_compute(settings: Settings) -> ComputeFleet:
    """The compute agent of this node: ``fake_hosts`` hosts behind one consumer, driver as chosen."""
    choice = choose_driver(settings.compute_driver, settings.libvirt_uri)
    log.info(
        "compute.driver_chosen",
        driver=choice.driver,
        reason=choice.reason,
        requested=settings.compute_driver,
    )
    if choice.driver == "libvirt":  # one real hypervisor: fake_hosts is the fake's alone
        try:
            driver = make_libvirt_driver(settings)
        except DriverUnavailable as exc:
            if settings.compute_driver != "auto":
                raise
            # auto promised a cloud that starts: a newcomer's `aiostack up` must not fail
            # because libvirtd happens to run but the instances directory is not usable.
            log.warning("compute.driver_chosen", driver="fake", reason=f"auto: {exc}")
        else:
            return build_fleet(
                settings.host,
                1,
                lambda _host: driver,
                report_interval_s=settings.compute_report_interval_s,
            )

    def fake(_host: str) -> ComputeDriver:
        return FakeDriver(
            vcpus=settings.fake_vcpus,
            ram_mb=settings.fake_ram_mb,
            disk_gb=settings.fake_disk_gb,
            spawn_latency_s=settings.fake_spawn_latency_s,
            spawn_failure_rate=settings.fake_spawn_failure_rate,
            fail_images=set(settings.fake_fail_images),
            vnc_address=fake_vnc_address(settings.fake_vnc_address),
        )

    fleet = build_fleet(
        settings.host,
        settings.fake_hosts,
        fake,
        report_interval_s=settings.compute_report_interval_s,
    )
    log.info("compute.hosts", count=len(fleet.agents), first=fleet.agents[0].host)
    return fleet


# Every actor this build knows, by the name `aiostack run NAME` takes.
ACTORS: dict[str, Callable[[Settings], Actor]] = {
    "registry": lambda s: ServiceRegistry(down_after_s=s.service_down_after_s),
    "scheduler": Scheduler.from_settings,
    "conductor": make_conductor,
    "compute": make_compute,
}


# Components that are not message consumers: they run beside the supervisor.
SERVICES = ("gateway", "console-proxy")


def runnable() -> list[str]:
    """Every name ``aiostack run`` accepts."""
    return sorted([*ACTORS, *SERVICES])


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The configured PostgreSQL, or a private one under ``state_dir/postgres``; migrated."""
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_dsn()
    if dsn is None:
        embedded = await EmbeddedPostgres.start(settings.state_dir.resolve() / "postgres")
        dsn = embedded.dsn
        log.info("store.embedded_postgres", data_dir=str(embedded.data_dir))
    else:
        log.info("store.postgres", url=mask_url(dsn))
    try:
        store = await Store.open(dsn, partitions=settings.outbox_partitions)
        try:
            yield store
        finally:
            await store.close()
    finally:
        if embedded is not None:
            await embedded.stop()


def make_bus(settings: Settings) -> Bus:
    url = settings.amqp_dsn()
    if url is None:
        log.info("bus.inproc", reason="AIOSTACK_AMQP_URL not set")
        return InProcBus()
    log.info("bus.amqp", url=mask_url(url), namespace=settings.bus_namespace)
    return AmqpBus(url, namespace=settings.bus_namespace)


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(
        host=settings.host,
        consumer=ConsumerOptions(
            prefetch=settings.prefetch,
            max_batch=settings.max_batch,
            max_attempts=settings.max_attempts,
            retry_delays_ms=tuple(settings.retry_delays_ms),
            publish_only=frozenset(settings.publish_only_kinds),
        ),
        heartbeat_interval_s=settings.heartbeat_interval_s,
        outbox_partitions=settings.outbox_partitions,
        outbox_batch=settings.outbox_batch,
        outbox_poll_s=settings.outbox_poll_s,
        timer_poll_s=settings.timer_poll_s,
        shutdown_grace_s=settings.shutdown_grace_s,
    )


@dataclass(frozen=True)
class NodePlan:
    actor_names: list[str]

    bootstrap_if_empty: bool = False

    def actors(self, settings: Settings) -> list[Actor]:
        unknown = [n for n in self.actor_names if n not in ACTORS and n not in SERVICES]
        if unknown:
            raise KeyError(f"unknown actor(s) {unknown}; known: {runnable()}")
        return [ACTORS[name](settings) for name in self.actor_names if name in ACTORS]

    @property
    def gateway(self) -> bool:
        return "gateway" in self.actor_names

    @property
    def console_proxy(self) -> bool:
        return "console-proxy" in self.actor_names


def announce(settings: Settings) -> Callable[[str, object], None]:
    """Tell the operator where the cloud is and how to reach it with the openstack client."""

    def ready(url: str, _created: object) -> None:
        clouds = clouds_yaml_path(settings)
        log.info("aiostack.ready", url=url, clouds_yaml=str(clouds) if clouds.exists() else None)
        if clouds.exists():
            print(
                f"aiostack is up at {url}\n"
                f"  export OS_CLIENT_CONFIG_FILE={clouds}\n"
                f"  openstack --os-cloud aiostack-admin catalog list",
                flush=True,
            )

    return ready


async def run_node(settings: Settings, plan: NodePlan, stop: asyncio.Event | None = None) -> None:
    """Run the planned actors until SIGTERM/SIGINT (or ``stop``), then shut down gracefully."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    actors = plan.actors(settings)
    bus = make_bus(settings)
    await bus.start()
    try:
        async with open_store(settings) as store:
            supervisor = Supervisor(bus, store, actors, runtime_options(settings))
            tasks = [supervisor.run(stop)]
            if plan.gateway:
                gateway = Gateway(settings, store, plan.bootstrap_if_empty, announce(settings))
                tasks.append(gateway.run(stop))
            if plan.console_proxy:
                optional = len(plan.actor_names) > 1  # aiostack up: not worth failing the node
                tasks.append(ConsoleProxy(settings, store, optional=optional).run(stop))
            await _run_all(tasks, stop)
    finally:
        await bus.close()


async def _run_all(bodies: list[Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run side by side; if one fails, stop the others and raise its error."""
    tasks = [asyncio.ensure_future(body) for body in bodies]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
