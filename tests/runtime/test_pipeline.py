"""emit in a transaction -> outbox -> relay -> bus -> consumer -> inbox commit, over both buses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cloud.runtime.bus import COMMANDS, Bus, RawMessage, envelope_headers
from cloud.runtime.consumer import Consumer, ConsumerOptions
from cloud.store.db import Store
from cloud.store.relay import OutboxRelay
from schemas import Envelope, encode
from tests.actors import COUNTERS_DDL, CounterActor, PingRecorder
from tests.conftest import eventually, quick_options, running_supervisor
from tests.messages import Bump, Pinged

FAST = ConsumerOptions(prefetch=32, max_batch=32, max_attempts=3, retry_delays_ms=(30, 60))


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after the fault point runs."""


async def counter(store: Store, name: str) -> int:
    value = await store.pool.fetchval("SELECT value FROM counters WHERE name = $1", name)
    return int(value or 0)


@pytest.fixture
async def tables(store: Store) -> Store:
    await store.pool.execute(COUNTERS_DDL)
    return store


@pytest.fixture
async def running(bus: Bus, tables: Store) -> AsyncIterator[tuple[Bus, Store]]:
    options = quick_options(consumer=FAST)
    async with running_supervisor(bus, tables, [CounterActor(), PingRecorder()], options):
        yield bus, tables


async def test_emitted_command_is_handled_once(running: tuple[Bus, Store]) -> None:
    _, store = running
    async with store.unit(source="test") as uow:
        await uow.emit(Bump(counter="a"))
    await eventually(lambda: _pings(store, "a", 1))
    assert await counter(store, "a") == 1
    kinds = await store.pool.fetch("SELECT kind, correlation_id, causation_id FROM events")
    assert [r["kind"] for r in kinds] == ["test.pinged"], "commands are not kept as events"
    assert kinds[0]["causation_id"] is not None, "the event names the command that caused it"


async def test_order_per_stream_is_kept(running: tuple[Bus, Store]) -> None:
    _, store = running
    for n in range(100):
        async with store.unit(source="test") as uow:
            await uow.emit(Pinged(stream="ordered", n=n))
            await uow.emit(Pinged(stream=f"other{n % 7}", n=n))
    await eventually(lambda: _pings(store, "ordered", 100))
    got = await store.pool.fetch("SELECT n FROM pings WHERE stream = 'ordered' ORDER BY seq")
    assert [r["n"] for r in got] == list(range(100))
    versions = await store.pool.fetch(
        "SELECT stream_version FROM events WHERE stream_id = 'test.ping:ordered' ORDER BY seq"
    )
    assert [r["stream_version"] for r in versions] == list(range(1, 101))


async def test_a_failing_handler_is_retried_then_succeeds(running: tuple[Bus, Store]) -> None:
    _, store = running
    async with store.unit(source="test") as uow:
        await uow.emit(Bump(counter="flaky", fail_times=2))
        await uow.emit(Bump(counter="steady"))
    await eventually(lambda: _pings(store, "flaky", 1))
    assert await counter(store, "flaky") == 1, "failed attempts rolled back their writes"
    assert await counter(store, "steady") == 1


async def test_handler_that_always_raises_is_dead_lettered(running: tuple[Bus, Store]) -> None:
    bus, store = running
    async with store.unit(source="test") as uow:
        await uow.emit(Bump(counter="doomed", fail_times=99))
    dead = await _wait_dead(bus, "counter", 1)
    assert dead[0].reason == "handler_failed"
    assert "told to fail 99 times" in dead[0].error
    assert dead[0].message.attempt == FAST.max_attempts
    # The consumer goes on serving others.
    async with store.unit(source="test") as uow:
        await uow.emit(Bump(counter="after"))
    await eventually(lambda: _pings(store, "after", 1))
    assert await counter(store, "doomed") == 0


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({}, b"{}", "bad_envelope"),
        (None, b"{not json", "invalid_json"),
        ({"kind": "test.nope"}, b"{}", "unknown_kind"),
        ({"v": "9"}, b"{}", "unknown_kind"),
        (None, b'{"counter": 5}', "schema_violation"),
        ({"kind": "test.pinged"}, b'{"n": 1}', "no_handler"),
    ],
)
async def test_bad_messages_are_dead_lettered_with_reason(
    running: tuple[Bus, Store], headers: dict[str, str] | None, body: bytes, reason: str
) -> None:
    bus, store = running
    envelope = envelope_headers(Envelope.first(Bump(counter="x"), "test"))
    if headers is not None:
        envelope = {**envelope, **headers} if headers else {}
    await bus.publish([RawMessage(COMMANDS, "test.bump", body, envelope)])
    dead = await _wait_dead(bus, "counter", 1)
    assert dead[0].reason == reason, dead[0].error
    assert dead[0].message.body == body
    async with store.unit(source="test") as uow:
        await uow.emit(Bump(counter="fine"))
    await eventually(lambda: _pings(store, "fine", 1))


async def test_crash_after_commit_before_ack_has_no_second_effect(bus: Bus, tables: Store) -> None:
    store = tables
    actor = CounterActor()

    async def crash_after_commit(point: str) -> None:
        if point == "consumer.after_commit":
            raise SimulatedCrash

    crashing = Consumer(actor, bus, store, options=FAST, fault=crash_after_commit)
    await crashing.start()
    await _publish_command(bus, Bump(counter="once"))
    with pytest.raises(SimulatedCrash):
        await asyncio.wait_for(crashing.wait(), 10)
    assert await counter(store, "once") == 1
    await crashing.stop()  # the dead consumer's channel closes: the broker redelivers
    survivor = Consumer(actor, bus, store, options=FAST)
    await survivor.start()
    await eventually(lambda: survivor.duplicates == 1)
    await survivor.stop()
    assert await counter(store, "once") == 1


async def test_relay_crash_after_publish_duplicates_are_absorbed(bus: Bus, tables: Store) -> None:
    store = tables
    consumer = Consumer(CounterActor(), bus, store, options=FAST)
    await consumer.start()
    async with store.unit(source="test") as uow:
        for i in range(5):
            await uow.emit(Bump(counter=f"r{i}"))

    async def crash_after_publish(point: str) -> None:
        raise SimulatedCrash

    doomed = OutboxRelay(store.pool, bus, partitions=store.partitions, fault=crash_after_publish)
    with pytest.raises(SimulatedCrash):
        await asyncio.wait_for(doomed.run(), 10)
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 5, "rows not marked sent"
    relay = OutboxRelay(store.pool, bus, partitions=store.partitions)
    relay.stop()  # drain and return
    await asyncio.wait_for(relay.run(), 10)
    await eventually(lambda: consumer.handled + consumer.duplicates == 10, timeout=3)
    await consumer.stop()
    assert consumer.duplicates == 5
    for i in range(5):
        assert await counter(store, f"r{i}") == 1


async def _publish_command(bus: Bus, command: Bump) -> None:
    await bus.declare("counter", CounterActor().bindings())
    envelope = envelope_headers(Envelope.first(command, "test"))
    await bus.publish([RawMessage(COMMANDS, command.kind, encode(command), envelope)])


async def _pings(store: Store, stream: str, count: int) -> bool:
    got = await store.pool.fetchval("SELECT count(*) FROM pings WHERE stream = $1", stream)
    return bool(got >= count)


async def _wait_dead(bus: Bus, queue: str, count: int) -> list:  # type: ignore[type-arg]
    dead: list = []  # type: ignore[type-arg]

    async def enough() -> bool:
        dead.extend(await bus.dead_letters(queue))
        return len(dead) >= count

    await eventually(enough)
    return dead
