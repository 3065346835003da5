"""Shared fixtures. Real PostgreSQL and RabbitMQ are required: a missing one fails the run, never skips.

- ``store``: a fresh database per test, cloned from a migrated template (fast).
- ``bus``: every test that takes it runs twice, over ``InProcBus`` and over ``AmqpBus`` (a private
  namespace of exchanges and queues per test, deleted afterwards).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import asyncpg
import pytest

from cloud.logs import configure
from cloud.runtime.actor import Actor
from cloud.runtime.amqp import AmqpBus
from cloud.runtime.bus import Bus
from cloud.runtime.inproc import InProcBus
from cloud.runtime.supervisor import RuntimeOptions, Supervisor
from cloud.store import migrations
from cloud.store.db import Store

PG_URL = os.environ.get(
    "AIOSTACK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("AIOSTACK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

configure("console", os.environ.get("AIOSTACK_TEST_LOG_LEVEL", "warning"))


def dsn_for(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    try:
        admin = await asyncpg.connect(PG_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is required at {PG_URL} (run scripts/ensure-services.sh): {exc}")
    name = f"aiostack_tmpl_{os.getpid()}"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(dsn_for(name))
    try:
        await migrations.upgrade(conn)
    finally:
        await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def database(template_db: str) -> AsyncIterator[str]:
    """A DSN of a new migrated database, dropped after the test."""
    name = f"aiostack_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield dsn_for(name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    opened = await Store.open(database, migrate=False, partitions=4)
    yield opened
    await opened.close()


async def make_amqp_bus() -> AmqpBus:
    bus = AmqpBus(AMQP_URL, namespace=f"t{uuid.uuid4().hex[:10]}")
    try:
        await asyncio.wait_for(bus.start(), 15)
    except (OSError, TimeoutError, ConnectionError) as exc:
        pytest.fail(f"RabbitMQ is required at {AMQP_URL} (run scripts/ensure-services.sh): {exc}")
    return bus


@pytest.fixture(params=["inproc", "amqp"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "inproc":
        inproc = InProcBus()
        await inproc.start()
        yield inproc
        await inproc.close()
        return
    amqp = await make_amqp_bus()
    yield amqp
    await amqp.delete_topology()
    await amqp.close()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0
) -> None:
    """Poll ``check`` until it is true; fail with a clear message after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_supervisor(
    bus: Bus, store: Store | None, actors: Sequence[Actor], options: RuntimeOptions
) -> AsyncIterator[Supervisor]:
    """A Supervisor running until the block ends, with every actor's queue consumed at entry."""
    stop = asyncio.Event()
    supervisor = Supervisor(bus, store, actors, options)
    task = asyncio.create_task(supervisor.run(stop))
    try:
        await asyncio.wait_for(supervisor.ready.wait(), 10)
        yield supervisor
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def quick_options(**overrides: object) -> RuntimeOptions:
    """Runtime options for tests: quick relay polling, heartbeats out of the way."""
    defaults: dict[str, object] = {
        "host": "test",
        "outbox_partitions": 4,
        "heartbeat_interval_s": 60,
        "outbox_poll_s": 0.2,
    }
    return RuntimeOptions(**{**defaults, **overrides})  # type: ignore[arg-type]
