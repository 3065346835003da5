"""``InProcBus``: the broker semantics of ``AmqpBus`` inside one event loop.

Topic exchanges with ``*``/``#`` patterns, durable-for-the-process queues with competing consumers
(round robin), prefetch, delayed retry and dead-letter queues. Bodies stay ``bytes`` so code above the
bus sees exactly what it would see over RabbitMQ. Nothing survives the process: that is what the
outbox is for.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloud.runtime.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    EXCHANGES,
    QUEUE_HEADER,
    REASON_HEADER,
    Binding,
    DeadLetter,
    DeliveryHandler,
    RawMessage,
    topic_matches,
)


@dataclass(eq=False)
class _Consumer:
    handler: DeliveryHandler
    prefetch: int
    unacked: dict[int, RawMessage] = field(default_factory=dict)
    active: bool = True


@dataclass(eq=False)
class _Queue:
    name: str
    bindings: set[Binding] = field(default_factory=set)
    ready: deque[RawMessage] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None
    turn: int = 0


class _InProcDelivery:
    def __init__(self, bus: InProcBus, queue: _Queue, consumer: _Consumer, tag: int) -> None:
        self._bus, self._queue, self._consumer, self._tag = bus, queue, consumer, tag
        self._message = consumer.unacked[tag]

    @property
    def message(self) -> RawMessage:
        return self._message

    def _settle(self) -> bool:
        # A delivery whose consumer was cancelled has already been requeued: settling it is a no-op,
        # exactly as an ack on a closed AMQP channel never reaches the broker.
        if self._consumer.unacked.pop(self._tag, None) is None:
            return False
        self._queue.wakeup.set()
        return True

    async def ack(self) -> None:
        self._settle()

    async def retry(self, delay_ms: int, error: str) -> None:
        if not self._settle():
            return
        again = self._message.with_headers(
            **{ATTEMPT_HEADER: str(self._message.attempt + 1), ERROR_HEADER: error}
        )
        loop = asyncio.get_running_loop()
        loop.call_later(delay_ms / 1000, self._bus._enqueue, self._queue, again)

    async def dead_letter(self, reason: str, error: str) -> None:
        if not self._settle():
            return
        kept = self._message.with_headers(
            **{REASON_HEADER: reason, ERROR_HEADER: error, QUEUE_HEADER: self._queue.name}
        )
        self._queue.dead.append(DeadLetter(kept, reason, error))


class _InProcSubscription:
    def __init__(self, bus: InProcBus, queue: _Queue, consumer: _Consumer) -> None:
        self._bus, self._queue, self._consumer = bus, queue, consumer

    async def cancel(self) -> None:
        if not self._consumer.active:
            return
        self._consumer.active = False
        self._queue.consumers.remove(self._consumer)
        # Unsettled deliveries return to the head of the queue, oldest first, as AMQP requeues them.
        for tag in sorted(self._consumer.unacked, reverse=True):
            self._queue.ready.appendleft(self._consumer.unacked.pop(tag))
        self._queue.wakeup.set()


class InProcBus:
    """Implements ``Bus`` in memory."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._tags = itertools.count(1)
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for queue in self._queues.values():
            if queue.pump is not None:
                queue.pump.cancel()
        pumps = [q.pump for q in self._queues.values() if q.pump is not None]
        await asyncio.gather(*pumps, return_exceptions=True)
        for queue in self._queues.values():
            queue.pump = None

    async def publish(self, messages: Sequence[RawMessage]) -> None:
        if self._closed:
            raise ConnectionError("InProcBus is closed")
        for message in messages:
            if message.exchange not in EXCHANGES:
                raise ValueError(f"unknown exchange {message.exchange!r}")
            for queue in self._queues.values():
                if any(
                    b.exchange == message.exchange and topic_matches(b.pattern, message.routing_key)
                    for b in queue.bindings
                ):
                    self._enqueue(queue, message)

    async def declare(self, queue: str, bindings: Sequence[Binding]) -> None:
        self._queue(queue).bindings.update(bindings)

    async def subscribe(
        self, queue: str, bindings: Sequence[Binding], handler: DeliveryHandler, prefetch: int
    ) -> _InProcSubscription:
        target = self._queue(queue)
        target.bindings.update(bindings)
        consumer = _Consumer(handler, prefetch)
        target.consumers.append(consumer)
        if target.pump is None or target.pump.done():
            target.pump = asyncio.get_running_loop().create_task(self._pump(target))
        target.wakeup.set()
        return _InProcSubscription(self, target, consumer)

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        target = self._queue(queue)
        taken, target.dead = target.dead, []
        return taken

    async def delete_queue(self, queue: str) -> None:
        target = self._queues.pop(queue, None)
        if target is not None and target.pump is not None:
            target.pump.cancel()

    def depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (not counting unacked ones)."""
        return len(self._queue(queue).ready)

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name)
        return queue

    def _enqueue(self, queue: _Queue, message: RawMessage) -> None:
        if self._queues.get(queue.name) is not queue:
            return  # deleted meanwhile
        queue.ready.append(message)
        queue.wakeup.set()

    async def _pump(self, queue: _Queue) -> None:
        """Hand ready messages to consumers with spare prefetch, round robin."""
        while True:
            await queue.wakeup.wait()
            queue.wakeup.clear()
            while queue.ready:
                consumer = self._next_consumer(queue)
                if consumer is None:
                    break
                tag = next(self._tags)
                consumer.unacked[tag] = queue.ready.popleft()
                await consumer.handler(_InProcDelivery(self, queue, consumer, tag))

    @staticmethod
    def _next_consumer(queue: _Queue) -> _Consumer | None:
        count = len(queue.consumers)
        for offset in range(count):
            candidate = queue.consumers[(queue.turn + offset) % count]
            if len(candidate.unacked) < candidate.prefetch:
                queue.turn = (queue.turn + offset + 1) % count
                return candidate
        return None
