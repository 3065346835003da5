"""Fault: the broker connection is cut mid-stream. After reconnecting, every accepted event is
delivered exactly once in effect: none lost, none applied twice, nothing dead-lettered.

The bus reaches RabbitMQ through ``TcpProxy``, which resets every connection at once (relay's
publisher channel and the consumer's channel alike) and refuses new ones for a while, as a network
failure would. ``reconnect_interval`` in the URL is aio-pika's own setting for its robust connection
(default 5 s); a short one keeps the test fast.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest

from cloud.runtime.amqp import AmqpBus, _AmqpSubscription
from cloud.runtime.bus import Binding, Delivery, DeliveryHandler
from cloud.runtime.consumer import ConsumerOptions
from cloud.store.db import Store
from tests.actors import COUNTERS_DDL, CounterActor
from tests.conftest import eventually, quick_options, running_supervisor
from tests.messages import Bump
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

BROKER = ("127.0.0.1", 5672)
N = 2000  # commands emitted
PER_TX = 10  # commands per transaction
TX_PAUSE_S = 0.02  # between transactions: the stream lasts a few seconds and spans the cuts
CUT_AT = (0.25, 0.6)  # cut when this share of the commands has reached the consumer
HOLD_S = 1.0  # new connections refused for this long after each cut
RECONNECT_INTERVAL_S = 0.3
OPTIONS = ConsumerOptions(prefetch=64, max_batch=32, max_attempts=5, retry_delays_ms=(50, 100))


class CountingBus(AmqpBus):
    """``AmqpBus`` that counts every delivery its subscribers receive, by message id."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(url, namespace)
        self.deliveries: Counter[str] = Counter()

    async def subscribe(
        self, queue: str, bindings: Sequence[Binding], handler: DeliveryHandler, prefetch: int
    ) -> _AmqpSubscription:
        async def counted(delivery: Delivery) -> None:
            self.deliveries[delivery.message.message_id] += 1
            await handler(delivery)

        return await super().subscribe(queue, bindings, counted, prefetch)


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    started = TcpProxy(*BROKER)
    await started.start()
    yield started
    await started.close()


@pytest.fixture
async def proxied_bus(proxy: TcpProxy) -> AsyncIterator[CountingBus]:
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval={RECONNECT_INTERVAL_S}"
    bus = CountingBus(url, namespace=f"t{uuid.uuid4().hex[:10]}")
    await asyncio.wait_for(bus.start(), 15)
    yield bus
    await proxy.resume()  # clean-up must reach the broker even if the test failed mid-outage
    await asyncio.wait_for(bus.delete_topology(), 15)
    await bus.close()


@pytest.fixture
async def tables(store: Store) -> Store:
    await store.pool.execute(COUNTERS_DDL)
    return store


async def _emit_all(store: Store) -> None:
    for start in range(0, N, PER_TX):
        async with store.unit(source="test") as uow:
            for i in range(start, min(start + PER_TX, N)):
                await uow.emit(Bump(counter=f"c{i}"))
        await asyncio.sleep(TX_PAUSE_S)


async def _cut_midstream(
    proxy: TcpProxy, bus: CountingBus, emitter: asyncio.Task[None]
) -> list[str]:
    """Cut at each ``CUT_AT`` share of deliveries, each time once the bus is connected again."""
    notes: list[str] = []
    for share in CUT_AT:
        accepted = proxy.accepted
        await eventually(lambda s=share: len(bus.deliveries) >= s * N, timeout=20)
        await eventually(lambda: proxy.live > 0, timeout=20)
        cut = proxy.cut(hold_s=HOLD_S)
        notes.append(
            f"cut {cut} connection(s) at {len(bus.deliveries)}/{N} delivered, "
            f"emitter {'running' if not emitter.done() else 'done'}, "
            f"{proxy.accepted - accepted} reconnect(s) before"
        )
    return notes


@pytest.mark.timeout(60)
async def test_broker_cut_midstream_loses_nothing_and_applies_once(
    proxy: TcpProxy, proxied_bus: CountingBus, tables: Store
) -> None:
    store, bus = tables, proxied_bus
    began = time.monotonic()
    emitter: asyncio.Task[None] | None = None
    options = quick_options(consumer=OPTIONS)
    async with running_supervisor(bus, store, [CounterActor()], options) as supervisor:
        try:
            emitter = asyncio.create_task(_emit_all(store))
            notes = await _cut_midstream(proxy, bus, emitter)
            await asyncio.wait_for(emitter, 20)

            async def all_applied() -> bool:
                done = await store.pool.fetchval(
                    "SELECT count(*) FROM counters WHERE name LIKE 'c%' AND value >= 1"
                )
                return bool(done == N)

            await eventually(all_applied, timeout=30)
            await eventually(lambda: _outbox_empty(store), timeout=15)
            converged = time.monotonic() - began
        finally:
            if emitter is not None:
                emitter.cancel()

    rows = await store.pool.fetch("SELECT name, value FROM counters WHERE name LIKE 'c%'")
    values = {r["name"]: r["value"] for r in rows}
    assert set(values) == {f"c{i}" for i in range(N)}, "a command was lost"
    twice = {name: v for name, v in values.items() if v != 1}
    assert not twice, f"applied more than once: {sorted(twice.items())[:10]}"
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    assert (
        await store.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'test.pinged'") == N
    ), "one event per command"
    assert await store.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'counter'") == N
    dead = await bus.dead_letters("counter")
    assert dead == [], [(d.reason, d.error) for d in dead]
    cuts = len(CUT_AT)
    assert proxy.cuts >= cuts and proxy.accepted >= 1 + cuts, "the connection was cut and reopened"

    # Informational: redeliveries and duplicates may legitimately be zero on a lucky cut.
    redelivered = sum(1 for count in bus.deliveries.values() if count > 1)
    consumer = supervisor.consumer("counter")
    print(
        f"\nbroker cut: {'; '.join(notes)}\n"
        f"converged in {converged:.1f}s; {sum(bus.deliveries.values())} deliveries of "
        f"{len(bus.deliveries)} ids, {redelivered} delivered more than once; "
        f"last consumer handled={consumer.handled} duplicates={consumer.duplicates}; "
        f"proxy accepted={proxy.accepted} cut={proxy.cuts}"
    )


async def _outbox_empty(store: Store) -> bool:
    return bool(await store.pool.fetchval("SELECT count(*) FROM outbox") == 0)
