"""Transport semantics, run over InProcBus and AmqpBus alike."""

from __future__ import annotations

import asyncio

from cloud.runtime.bus import COMMANDS, EVENTS, Binding, Bus, Delivery, RawMessage, envelope_headers
from schemas import Envelope, decode, encode
from tests.conftest import eventually
from tests.messages import Bump, Pinged


def raw(message: Pinged | Bump, routing_key: str | None = None) -> RawMessage:
    exchange = EVENTS if isinstance(message, Pinged) else COMMANDS
    envelope = Envelope.first(message, "test")
    return RawMessage(
        exchange, routing_key or message.kind, encode(message), envelope_headers(envelope)
    )


class Collector:
    def __init__(self) -> None:
        self.got: list[RawMessage] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.got.append(delivery.message)
        await delivery.ack()


async def test_typed_round_trip(bus: Bus) -> None:
    sink = Collector()
    sub = await bus.subscribe("rt", [Binding(EVENTS, "test.pinged")], sink, prefetch=10)
    sent = Pinged(stream="a", n=7)
    await bus.publish([raw(sent)])
    await eventually(lambda: len(sink.got) == 1)
    got = sink.got[0]
    assert decode(got.headers["kind"], int(got.headers["v"]), got.body) == sent
    assert got.exchange == EVENTS and got.routing_key == "test.pinged"
    await sub.cancel()


async def test_wildcard_routing(bus: Bus) -> None:
    star, hash_, exact = Collector(), Collector(), Collector()
    subs = [
        await bus.subscribe("star", [Binding(COMMANDS, "compute.*")], star, 10),
        await bus.subscribe("hash", [Binding(COMMANDS, "compute.#")], hash_, 10),
        await bus.subscribe("exact", [Binding(COMMANDS, "compute.h1")], exact, 10),
    ]
    cmd = Bump(counter="c")
    await bus.publish([raw(cmd, "compute.h1"), raw(cmd, "compute.h2.x"), raw(cmd, "compute")])
    await eventually(lambda: len(hash_.got) == 3)
    await asyncio.sleep(0.2)  # give wrong routes a chance to show up
    assert [m.routing_key for m in star.got] == ["compute.h1"]
    assert sorted(m.routing_key for m in hash_.got) == ["compute", "compute.h1", "compute.h2.x"]
    assert [m.routing_key for m in exact.got] == ["compute.h1"]
    for sub in subs:
        await sub.cancel()


async def test_competing_consumers_share_a_queue(bus: Bus) -> None:
    first, second = Collector(), Collector()
    binding = [Binding(EVENTS, "test.pinged")]
    subs = [
        await bus.subscribe("shared", binding, first, 1),
        await bus.subscribe("shared", binding, second, 1),
    ]
    await bus.publish([raw(Pinged(n=i)) for i in range(40)])
    await eventually(lambda: len(first.got) + len(second.got) == 40)
    await asyncio.sleep(0.2)
    assert len(first.got) + len(second.got) == 40, "each message goes to exactly one consumer"
    assert first.got and second.got, "both consumers took a share"
    for sub in subs:
        await sub.cancel()


async def test_order_is_kept_within_a_queue(bus: Bus) -> None:
    sink = Collector()
    sub = await bus.subscribe("ordered", [Binding(EVENTS, "test.pinged")], sink, prefetch=50)
    await bus.publish([raw(Pinged(n=i)) for i in range(300)])
    await eventually(lambda: len(sink.got) == 300)
    assert [Pinged.model_validate_json(m.body).n for m in sink.got] == list(range(300))
    await sub.cancel()


async def test_unsettled_deliveries_return_to_the_queue_on_cancel(bus: Bus) -> None:
    held: list[Delivery] = []

    async def hold(delivery: Delivery) -> None:
        held.append(delivery)

    binding = [Binding(EVENTS, "test.pinged")]
    sub = await bus.subscribe("requeue", binding, hold, prefetch=5)
    await bus.publish([raw(Pinged(n=1))])
    await eventually(lambda: len(held) == 1)
    await sub.cancel()
    sink = Collector()
    again = await bus.subscribe("requeue", binding, sink, prefetch=5)
    await eventually(lambda: len(sink.got) == 1)
    assert sink.got[0].message_id == held[0].message.message_id
    await again.cancel()


async def test_retry_redelivers_later_with_attempt_counted(bus: Bus) -> None:
    seen: list[RawMessage] = []

    async def fail_once(delivery: Delivery) -> None:
        seen.append(delivery.message)
        if len(seen) == 1:
            await delivery.retry(50, "boom")
        else:
            await delivery.ack()

    sub = await bus.subscribe("retry", [Binding(EVENTS, "test.pinged")], fail_once, 5)
    await bus.publish([raw(Pinged(n=1))])
    await eventually(lambda: len(seen) == 2)
    assert seen[1].attempt == 2 and seen[1].headers["x-error"] == "boom"
    assert seen[1].routing_key == "test.pinged" and seen[1].exchange == EVENTS
    await sub.cancel()
