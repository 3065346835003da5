"""The transport contract shared by ``AmqpBus`` and ``InProcBus``.

A bus moves ``RawMessage`` bytes between topic exchanges and named durable queues. It knows nothing
of message classes: decoding, the inbox and transactions live in the consumer (``consumer.py``), so
both transports behave identically above this line.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from schemas import Envelope
from schemas.codec import DecodeError

EVENTS = "events"
COMMANDS = "commands"
EXCHANGES = (EVENTS, COMMANDS)

# Header names carried beside the body; the envelope travels entirely in them.
ENVELOPE_HEADERS = ("id", "kind", "v", "correlation_id", "causation_id", "occurred_at", "source")
ATTEMPT_HEADER = "x-attempt"
ERROR_HEADER = "x-error"
REASON_HEADER = "x-reason"
QUEUE_HEADER = "x-queue"


@dataclass(frozen=True)
class RawMessage:
    """What crosses the wire: an exchange, a routing key, headers and a body."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def message_id(self) -> str:
        return self.headers.get("id", "")

    @property
    def attempt(self) -> int:
        try:
            return int(self.headers.get(ATTEMPT_HEADER, "1"))
        except ValueError:
            return 1

    def with_headers(self, **extra: str) -> RawMessage:
        return RawMessage(self.exchange, self.routing_key, self.body, {**self.headers, **extra})


@dataclass(frozen=True)
class Binding:
    """Route messages whose routing key matches ``pattern`` (``*`` one word, ``#`` any) on ``exchange``."""

    exchange: str
    pattern: str


@dataclass(frozen=True)
class DeadLetter:
    """A message that was given up on, with why."""

    message: RawMessage
    reason: str
    error: str


class Delivery(Protocol):
    """One delivered message; exactly one of ack/retry/dead_letter settles it."""

    @property
    def message(self) -> RawMessage: ...

    async def ack(self) -> None: ...

    async def retry(self, delay_ms: int, error: str) -> None:
        """Deliver again to the same queue after ``delay_ms``, with the attempt counter raised."""

    async def dead_letter(self, reason: str, error: str) -> None:
        """Move to the queue's dead-letter queue, keeping ``reason`` and ``error``."""


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming. Deliveries not yet settled go back to the queue."""


class Bus(Protocol):
    """Topic routing, competing consumers on a queue, confirmed publishing."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, messages: Sequence[RawMessage]) -> None:
        """Publish in order; returns once the broker has confirmed every message."""

    async def declare(self, queue: str, bindings: Sequence[Binding]) -> None:
        """Create ``queue`` (durable) with its bindings, so messages wait for a consumer."""

    async def subscribe(
        self, queue: str, bindings: Sequence[Binding], handler: DeliveryHandler, prefetch: int
    ) -> Subscription: ...

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Take every message out of ``queue``'s dead-letter queue (for operators and tests)."""

    async def delete_queue(self, queue: str) -> None: ...


@functools.lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic semantics: words split by dots, ``*`` matches one word, ``#`` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


def envelope_headers(envelope: Envelope) -> dict[str, str]:
    headers = {
        "id": envelope.id,
        "kind": envelope.kind,
        "v": str(envelope.v),
        "correlation_id": envelope.correlation_id,
        "occurred_at": envelope.occurred_at.isoformat(),
        "source": envelope.source,
    }
    if envelope.causation_id:
        headers["causation_id"] = envelope.causation_id
    return headers


def envelope_from_headers(headers: Mapping[str, str]) -> Envelope:
    """Rebuild the envelope; a missing or malformed field is a ``DecodeError("bad_envelope")``."""
    try:
        return Envelope(
            id=headers["id"],
            kind=headers["kind"],
            v=int(headers["v"]),
            correlation_id=headers["correlation_id"],
            causation_id=headers.get("causation_id") or None,
            occurred_at=datetime.fromisoformat(headers["occurred_at"]),
            source=headers.get("source", "unknown"),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise DecodeError("bad_envelope", f"{type(exc).__name__}: {exc}") from None
