"""The benchmark's own message type (registered under the ``bench.`` prefix)."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas import Event


class Tick(Event):
    """v1: one benchmark event.

    ``sent`` is a ``time.perf_counter()`` reading taken when the event was emitted (or, in paced
    runs, the instant it was scheduled for). Producer and consumer share one process, so the
    monotonic clock is comparable at the consumer.
    """

    kind: Literal["bench.tick"] = "bench.tick"
    v: Literal[1] = 1
    stream_prefix: ClassVar[str | None] = "bench.stream"
    stream_key: ClassVar[str | None] = "stream"
    stream: str
    seq: int
    sent: float
