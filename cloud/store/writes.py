"""What a transaction writes besides its own rows: events, outbox messages and timers.

Writes are buffered and flushed with one statement per table just before commit, so a consumer that
handles a batch of deliveries in one transaction pays a few round trips for the whole batch.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from cloud.runtime.bus import COMMANDS, EVENTS, envelope_headers
from cloud.runtime.clock import Clock
from cloud.store.conn import DbConnection
from schemas import Command, Envelope, Event, Message, encode

OUTBOX_CHANNEL = "aiostack_outbox"


class ConcurrencyError(RuntimeError):
    """A stream was not at the version the writer expected: someone else appended first."""


def route(message: Message, to: str | None) -> tuple[str, str]:
    """(exchange, routing key): events go out under their kind; commands to an address or kind."""
    if isinstance(message, Event):
        if to is not None:
            raise ValueError("events are published by kind; only commands take an address")
        return EVENTS, message.kind
    if isinstance(message, Command):
        return COMMANDS, to or message.kind
    raise TypeError(f"{type(message).__name__} is neither an Event nor a Command")


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


@dataclass
class _EventRow:
    envelope: Envelope
    stream_id: str
    body: str
    expected_version: int | None
    stream_version: int = 0


@dataclass
class PendingWrites:
    """Everything one transaction will write on flush."""

    partitions: int
    events: list[_EventRow] = field(default_factory=list)
    outbox: list[tuple[int, str, str, str, bytes]] = field(default_factory=list)
    timers: dict[str, tuple[datetime, int, str, str, str, bytes]] = field(default_factory=dict)

    def add(
        self, message: Message, envelope: Envelope, to: str | None, expected_version: int | None
    ) -> None:
        exchange, routing_key = route(message, to)
        body = encode(message)
        key = routing_key
        if isinstance(message, Event):
            key = message.stream_id()
            self.events.append(_EventRow(envelope, key, body.decode(), expected_version))
        headers = json.dumps(envelope_headers(envelope))
        partition = partition_of(key, self.partitions)
        self.outbox.append((partition, exchange, routing_key, headers, body))

    def add_timer(
        self, key: str, due_at: datetime, message: Message, envelope: Envelope, to: str | None
    ) -> None:
        exchange, routing_key = route(message, to)
        stream = message.stream_id() if isinstance(message, Event) else routing_key
        self.timers[key] = (
            due_at,
            partition_of(stream, self.partitions),
            exchange,
            routing_key,
            json.dumps(envelope_headers(envelope)),
            encode(message),
        )

    async def flush(self, conn: DbConnection) -> None:
        if self.events:
            await self._append_events(conn)
        if self.outbox:
            partition, exchange, routing_key, headers, body = zip(*self.outbox, strict=True)
            # The CTE always runs; the notification is delivered at commit and wakes idle relays.
            await conn.execute(
                """WITH written AS (
                       INSERT INTO outbox (partition, exchange, routing_key, headers, body)
                       SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::jsonb[],
                                            $5::bytea[]))
                   SELECT pg_notify($6, '')""",
                list(partition),
                list(exchange),
                list(routing_key),
                list(headers),
                list(body),
                OUTBOX_CHANNEL,
            )
        if self.timers:
            keys = list(self.timers)
            due, partition, exchange, routing_key, headers, body = zip(
                *self.timers.values(), strict=True
            )
            await conn.execute(
                """INSERT INTO timers (key, due_at, partition, exchange, routing_key, headers, body)
                   SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::text[],
                                        $5::text[], $6::jsonb[], $7::bytea[])
                   ON CONFLICT (key) DO UPDATE SET due_at = excluded.due_at,
                       partition = excluded.partition, exchange = excluded.exchange,
                       routing_key = excluded.routing_key, headers = excluded.headers,
                       body = excluded.body""",
                keys,
                list(due),
                list(partition),
                list(exchange),
                list(routing_key),
                list(headers),
                list(body),
            )
        self.events.clear()
        self.outbox.clear()
        self.timers.clear()

    async def _append_events(self, conn: DbConnection) -> None:
        await self._claim_versions(conn)
        rows = self.events
        await conn.execute(
            """INSERT INTO events (id, stream_id, stream_version, kind, v, body, correlation_id,
                                   causation_id, occurred_at, source)
               SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[],
                                    $6::jsonb[], $7::text[], $8::text[], $9::timestamptz[],
                                    $10::text[])""",
            [r.envelope.id for r in rows],
            [r.stream_id for r in rows],
            [r.stream_version for r in rows],
            [r.envelope.kind for r in rows],
            [r.envelope.v for r in rows],
            [r.body for r in rows],
            [r.envelope.correlation_id for r in rows],
            [r.envelope.causation_id for r in rows],
            [r.envelope.occurred_at for r in rows],
            [r.envelope.source for r in rows],
        )

    async def _claim_versions(self, conn: DbConnection) -> None:
        """Give each event its stream version; a stale ``expected_version`` raises."""
        checked = [r for r in self.events if r.expected_version is not None]
        free = Counter(r.stream_id for r in self.events if r.expected_version is None)
        reached: dict[str, int] = {}
        for row in checked:  # rare: one statement each, in emit order
            expected = reached.get(row.stream_id, row.expected_version)
            if expected == 0:
                got = await conn.fetchval(
                    "INSERT INTO streams VALUES ($1, 1) ON CONFLICT DO NOTHING RETURNING version",
                    row.stream_id,
                )
            else:
                got = await conn.fetchval(
                    "UPDATE streams SET version = version + 1 WHERE stream_id = $1 AND version = $2"
                    " RETURNING version",
                    row.stream_id,
                    expected,
                )
            if got is None:
                raise ConcurrencyError(f"stream {row.stream_id} is not at version {expected}")
            row.stream_version = reached[row.stream_id] = got
        if free:
            # One upsert for all streams; the row lock serialises concurrent writers per stream.
            # Rows are locked in stream-id order in every writer, so two writers sharing streams
            # wait for each other instead of deadlocking.
            ordered = sorted(free)
            result = await conn.fetch(
                """INSERT INTO streams (stream_id, version)
                   SELECT * FROM unnest($1::text[], $2::int[]) AS u(stream_id, n)
                   ORDER BY stream_id
                   ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + excluded.version
                   RETURNING stream_id, version""",
                ordered,
                [free[stream] for stream in ordered],
            )
            next_version = {r["stream_id"]: r["version"] - free[r["stream_id"]] for r in result}
            for row in self.events:
                if row.expected_version is None:
                    next_version[row.stream_id] += 1
                    row.stream_version = next_version[row.stream_id]


class UnitOfWork:
    """The writing side of one transaction, seen by one cause (a request or a handled message)."""

    def __init__(
        self,
        conn: DbConnection,
        pending: PendingWrites,
        *,
        source: str,
        clock: Clock,
        cause: Envelope | None = None,
    ) -> None:
        self.conn, self._pending, self.source, self.clock, self.cause = (
            conn,
            pending,
            source,
            clock,
            cause,
        )

    def _envelope(self, message: Message) -> Envelope:
        at = self.clock.now()
        if self.cause is None:
            return Envelope.first(message, self.source, at=at)
        return self.cause.reply(message, self.source, at=at)

    async def emit(
        self, message: Message, *, to: str | None = None, expected_version: int | None = None
    ) -> Envelope:
        """Record ``message`` (events also go to the event log); it is sent after commit."""
        envelope = self._envelope(message)
        self._pending.add(message, envelope, to, expected_version)
        return envelope

    async def schedule(
        self, message: Message, *, at: datetime, key: str, to: str | None = None
    ) -> Envelope:
        """Send ``message`` at ``at``, even if this process is gone by then. Same key replaces."""
        envelope = self._envelope(message)
        self._pending.add_timer(key, at, message, envelope, to)
        return envelope

    async def cancel_timer(self, key: str) -> bool:
        """Forget a timer (scheduled earlier, or in this transaction). True if one existed."""
        pending = self._pending.timers.pop(key, None) is not None
        deleted = await self.conn.fetchval("DELETE FROM timers WHERE key = $1 RETURNING 1", key)
        return pending or deleted is not None
