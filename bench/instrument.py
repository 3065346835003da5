"""Measuring points around the aiostack pipeline, without touching its code.

``Recorder`` collects per-event latencies: the sink actor's handler notes each event's ``sent``
stamp, and ``InstrumentedBus`` wraps every delivery so that its ``ack`` (which the consumer calls
right after the inbox transaction has committed) turns that stamp into a commit-time latency.

``InstrumentedBus`` also counts publishes (the relay's batches) and time spent in them, so the report
can say how the work was batched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cloud.runtime.bus import (
    Binding,
    Bus,
    DeadLetter,
    Delivery,
    DeliveryHandler,
    RawMessage,
    Subscription,
)


class Recorder:
    """Latencies (seconds) of committed events, and when the last one committed."""

    def __init__(self) -> None:
        self._sent: dict[str, float] = {}
        self.latencies: list[float] = []
        self.last_commit = 0.0
        self.target = 0
        self.done = asyncio.Event()

    def expect(self, count: int) -> None:
        """Forget what was recorded; ``done`` is set once ``count`` more events have committed."""
        self._sent.clear()
        self.latencies = []
        self.last_commit = 0.0
        self.target = count
        self.done = asyncio.Event()
        if count <= 0:
            self.done.set()

    @property
    def count(self) -> int:
        return len(self.latencies)

    def handled(self, message_id: str, sent: float) -> None:
        """The handler saw the event (its transaction has not committed yet)."""
        self._sent[message_id] = sent

    def committed(self, message_id: str) -> None:
        """The delivery's transaction committed: record its latency."""
        sent = self._sent.pop(message_id, None)
        if sent is None:
            return  # a duplicate, or an event from before ``expect``
        now = time.perf_counter()
        self.latencies.append(now - sent)
        self.last_commit = now
        if len(self.latencies) >= self.target:
            self.done.set()


@dataclass
class PublishStats:
    """What went through ``Bus.publish`` (the relay's batches, plus heartbeats)."""

    calls: int = 0
    messages: int = 0
    seconds: float = 0.0
    last: float = 0.0  # perf_counter() when the last publish returned

    @property
    def mean_batch(self) -> float:
        return self.messages / self.calls if self.calls else 0.0

    @property
    def mean_ms(self) -> float:
        return 1000 * self.seconds / self.calls if self.calls else 0.0


class _TimedDelivery:
    """A delivery whose ``ack`` first tells the recorder that its transaction committed."""

    __slots__ = ("_inner", "_recorder")

    def __init__(self, inner: Delivery, recorder: Recorder) -> None:
        self._inner, self._recorder = inner, recorder

    @property
    def message(self) -> RawMessage:
        return self._inner.message

    async def ack(self) -> None:
        self._recorder.committed(self._inner.message.message_id)
        await self._inner.ack()

    async def retry(self, delay_ms: int, error: str) -> None:
        await self._inner.retry(delay_ms, error)

    async def dead_letter(self, reason: str, error: str) -> None:
        await self._inner.dead_letter(reason, error)


class InstrumentedBus:
    """A ``Bus`` that delegates to another one and measures what passes through it."""

    def __init__(self, inner: Bus, recorder: Recorder) -> None:
        self.inner, self._recorder = inner, recorder
        self.publishes = PublishStats()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(self, messages: Sequence[RawMessage]) -> None:
        started = time.perf_counter()
        await self.inner.publish(messages)
        self.publishes.last = time.perf_counter()
        self.publishes.seconds += self.publishes.last - started
        self.publishes.calls += 1
        self.publishes.messages += len(messages)

    async def declare(self, queue: str, bindings: Sequence[Binding]) -> None:
        await self.inner.declare(queue, bindings)

    async def subscribe(
        self, queue: str, bindings: Sequence[Binding], handler: DeliveryHandler, prefetch: int
    ) -> Subscription:
        recorder = self._recorder

        async def timed(delivery: Delivery) -> None:
            await handler(_TimedDelivery(delivery, recorder))

        return await self.inner.subscribe(queue, bindings, timed, prefetch)

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        return await self.inner.dead_letters(queue)

    async def delete_queue(self, queue: str) -> None:
        await self.inner.delete_queue(queue)
