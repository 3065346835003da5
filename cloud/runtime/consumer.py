"""Runs one actor on one queue: decode, deduplicate, handle, commit, then ack.

Control-plane actors (with a ``Store``) handle the deliveries that are waiting, up to ``max_batch``, in
one transaction: one inbox insert tells which ids are new, the handlers run, their events, outbox rows
and timers are flushed, the transaction commits, and only then are the deliveries acked. If any
handler of the batch raises, the transaction is rolled back and each delivery is handled alone, so
one bad message cannot hold back the others. A failed delivery is retried with backoff and, after
``max_attempts``, dead-lettered with its error. Undecodable messages are dead-lettered at once.

Kinds listed in ``ConsumerOptions.publish_only`` (periodic reports) skip the event log and the
outbox: they are published directly once the transaction committed, at most once, as heartbeats are.
A lost one is replaced by the next.

Agents (no ``Store``) handle one delivery at a time and publish what the handler emitted, with
confirms, before the ack. They deduplicate only within the process: their handlers must be
idempotent (desired state with a generation number), as ARCHITECTURE.md requires of agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from cloud.runtime.actor import Actor, Context, HandlerFn, Writer
from cloud.runtime.bus import (
    Bus,
    Delivery,
    RawMessage,
    Subscription,
    envelope_from_headers,
    envelope_headers,
)
from cloud.runtime.clock import Clock, SystemClock
from cloud.store.conn import DbConnection
from cloud.store.db import Store
from cloud.store.writes import PendingWrites, UnitOfWork, route
from schemas import DecodeError, Envelope, Message, decode, encode

log = structlog.get_logger("aiostack.consumer")

FaultHook = Callable[[str], Awaitable[None]]


async def no_fault(point: str) -> None:
    return None


@dataclass(frozen=True)
class ConsumerOptions:
    prefetch: int = 64
    max_batch: int = 64
    max_attempts: int = 5
    retry_delays_ms: tuple[int, ...] = (200, 1000, 5000, 30000)
    # Message kinds published after commit instead of being stored (event log and outbox).
    publish_only: frozenset[str] = frozenset()

    def delay_for(self, attempt: int) -> int:
        return self.retry_delays_ms[min(attempt, len(self.retry_delays_ms)) - 1]


@dataclass(frozen=True)
class _Item:
    delivery: Delivery
    envelope: Envelope
    message: Message
    handler: HandlerFn


class Consumer:
    def __init__(
        self,
        actor: Actor,
        bus: Bus,
        store: Store | None,
        *,
        options: ConsumerOptions | None = None,
        clock: Clock | None = None,
        source: str | None = None,
        fault: FaultHook = no_fault,
    ) -> None:
        self.actor, self._bus, self._store = actor, bus, store
        self._options = options or ConsumerOptions()
        self._clock: Clock = clock or (store.clock if store else SystemClock())
        self._source = source or actor.name
        self._fault = fault
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._subscription: Subscription | None = None
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._seen: OrderedDict[str, None] = OrderedDict()  # agents: recent ids, for duplicates
        self.handled = 0
        self.duplicates = 0

    async def start(self) -> None:
        self._stopping = False
        self._worker = asyncio.get_running_loop().create_task(self._work())
        self._subscription = await self._bus.subscribe(
            self.actor.queue, self.actor.bindings(), self._accept, self._options.prefetch
        )

    async def stop(self) -> None:
        """Stop taking deliveries, finish the batch in hand, give the rest back to the queue."""
        self._stopping = True
        self._inbox.put_nowait(None)
        if self._worker is not None:
            # Its outcome (a crash) is reported by wait(); here we only need it finished.
            await asyncio.wait([self._worker])
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.cancel()
        self._subscription = self._worker = None

    async def wait(self) -> None:
        """Until the worker ends (it only ends by ``stop`` or a crash, which it re-raises)."""
        if self._worker is not None:
            await self._worker

    async def _accept(self, delivery: Delivery) -> None:
        self._inbox.put_nowait(delivery)

    async def _work(self) -> None:
        while not self._stopping:
            first = await self._inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._options.max_batch and not self._inbox.empty():
                more = self._inbox.get_nowait()
                if more is None:
                    self._stopping = True
                    break
                batch.append(more)
            await self._process(batch)

    async def _process(self, batch: Sequence[Delivery]) -> None:
        items = [item for d in batch if (item := await self._decode(d)) is not None]
        if not items:
            return
        if self._store is None:
            for item in items:
                await self._handle_without_store(item)
            return
        try:
            await self._handle_in_transaction(self._store, items)
        except Exception:
            if len(items) == 1:
                await self._failed(items[0], _describe_current())
                return
            for item in items:  # isolate the failing delivery
                try:
                    await self._handle_in_transaction(self._store, [item])
                except Exception:
                    await self._failed(item, _describe_current())

    async def _decode(self, delivery: Delivery) -> _Item | None:
        raw = delivery.message
        try:
            envelope = envelope_from_headers(raw.headers)
            message = decode(envelope.kind, envelope.v, raw.body)
        except DecodeError as exc:
            await self._settle_bad(delivery, exc.reason, exc.detail)
            return None
        handler = self.actor.route(message, raw.routing_key)
        if handler is None:
            await self._settle_bad(
                delivery,
                "no_handler",
                f"{self.actor.name} does not handle {envelope.kind} v{envelope.v}",
            )
            return None
        return _Item(delivery, envelope, message, handler)

    async def _settle_bad(self, delivery: Delivery, reason: str, detail: str) -> None:
        log.warning(
            "message.dead_lettered",
            queue=self.actor.queue,
            reason=reason,
            detail=detail,
            message_id=delivery.message.message_id,
        )
        try:
            await delivery.dead_letter(reason, detail)
        except ConnectionError as exc:
            log.warning(
                "message.not_settled", error=repr(exc), message_id=delivery.message.message_id
            )

    async def _handle_in_transaction(self, store: Store, items: Sequence[_Item]) -> None:
        async with store.pool.acquire() as conn, conn.transaction():
            fresh = {
                row["message_id"]
                for row in await conn.fetch(
                    """INSERT INTO inbox (consumer, message_id)
                           SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING
                           RETURNING message_id""",
                    self.actor.queue,
                    [item.envelope.id for item in items],
                )
            }
            pending = PendingWrites(store.partitions)
            direct: list[PublishAfterSuccess] = []
            calls: list[tuple[_Item, Writer]] = []
            for item in items:
                if item.envelope.id not in fresh:
                    self.duplicates += 1
                    log.info(
                        "message.duplicate_dropped",
                        queue=self.actor.queue,
                        message_id=item.envelope.id,
                        kind=item.envelope.kind,
                    )
                    continue
                fresh.discard(item.envelope.id)  # a second copy in the same batch is one too
                uow = UnitOfWork(
                    conn, pending, source=self._source, clock=self._clock, cause=item.envelope
                )
                direct.append(PublishAfterSuccess(self._source, self._clock, item.envelope))
                calls.append((item, divert(uow, direct[-1], self._options.publish_only)))
            await self._call_all(calls, conn)
            await pending.flush(conn)
        store.committed()
        await publish_at_most_once(self._bus, [m for d in direct for m in d.messages])
        await self._fault("consumer.after_commit")
        for item in items:
            await item.delivery.ack()
        self.handled += len(calls)

    async def _call_all(self, calls: Sequence[tuple[_Item, Writer]], conn: DbConnection) -> None:
        """In delivery order; an actor with ``order_key`` runs different keys' calls side by side.

        A fleet of fake hosts keys by host: one slow driver call does not hold up the other hosts,
        and each host still sees its own commands in order.
        """
        groups: dict[str | None, list[tuple[_Item, Writer]]] = {}
        for item, writer in calls:
            key = self.actor.order_key(item.delivery.message.routing_key)
            groups.setdefault(key, []).append((item, writer))
        if len(groups) <= 1 or None in groups:
            for item, writer in calls:
                await self._call(item, writer, conn)
            return

        async def in_order(group: list[tuple[_Item, Writer]]) -> None:
            for item, writer in group:
                await self._call(item, writer, conn)

        outcomes = await asyncio.gather(
            *(in_order(g) for g in groups.values()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _handle_without_store(self, item: _Item) -> None:
        if item.envelope.id in self._seen:
            self.duplicates += 1
            await item.delivery.ack()
            return
        buffer = PublishAfterSuccess(self._source, self._clock, item.envelope)
        try:
            await self._call(item, buffer, None)
            await self._bus.publish(buffer.messages)
        except Exception:
            await self._failed(item, _describe_current())
            return
        self._seen[item.envelope.id] = None
        if len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        await item.delivery.ack()
        self.handled += 1

    async def _call(self, item: _Item, writer: Writer, conn: DbConnection | None) -> None:
        bound = {
            "actor": self.actor.name,
            "kind": item.envelope.kind,
            "message_id": item.envelope.id,
            "correlation_id": item.envelope.correlation_id,
            "causation_id": item.envelope.causation_id,
        }
        with structlog.contextvars.bound_contextvars(**bound):
            ctx = Context(item.envelope, writer, self._clock, log.bind(**bound), conn)
            await item.handler(item.message, ctx)

    async def _failed(self, item: _Item, error: str) -> None:
        attempt = item.delivery.message.attempt
        bound = {
            "queue": self.actor.queue,
            "kind": item.envelope.kind,
            "message_id": item.envelope.id,
            "attempt": attempt,
            "error": error,
            "correlation_id": item.envelope.correlation_id,
        }
        try:
            if attempt >= self._options.max_attempts:
                log.error("message.gave_up", **bound)
                await item.delivery.dead_letter("handler_failed", error)
            else:
                log.warning("message.retrying", **bound)
                await item.delivery.retry(self._options.delay_for(attempt), error)
        except ConnectionError as exc:
            # The broker is unreachable; the delivery stays unacked and comes back after reconnect.
            log.warning("message.not_settled", error=repr(exc), **bound)


class PublishAfterSuccess:
    """An agent's writer: emitted messages are published once the handler returned.

    Without a ``cause`` (an agent's tick) each message starts a new conversation.
    """

    def __init__(self, source: str, clock: Clock, cause: Envelope | None) -> None:
        self._source, self._clock, self.cause = source, clock, cause
        self.messages: list[RawMessage] = []

    async def emit(
        self, message: Message, *, to: str | None = None, expected_version: int | None = None
    ) -> Envelope:
        if expected_version is not None:
            raise ValueError("agents do not append to streams")
        at = self._clock.now()
        if self.cause is None:
            envelope = Envelope.first(message, self._source, at=at)
        else:
            envelope = self.cause.reply(message, self._source, at=at)
        exchange, routing_key = route(message, to)
        self.messages.append(
            RawMessage(exchange, routing_key, encode(message), envelope_headers(envelope))
        )
        return envelope

    async def schedule(
        self, message: Message, *, at: datetime, key: str, to: str | None = None
    ) -> Envelope:
        raise RuntimeError("durable timers live in the control plane; agents have no database")

    async def cancel_timer(self, key: str) -> bool:
        raise RuntimeError("durable timers live in the control plane; agents have no database")


class _Diverting:
    """A transaction's writer that hands the ``publish_only`` kinds to a direct-publish buffer."""

    def __init__(self, stored: Writer, direct: PublishAfterSuccess, kinds: frozenset[str]) -> None:
        self._stored, self._direct, self._kinds = stored, direct, kinds

    async def emit(
        self, message: Message, *, to: str | None = None, expected_version: int | None = None
    ) -> Envelope:
        if message.kind in self._kinds and expected_version is None:
            return await self._direct.emit(message, to=to)
        return await self._stored.emit(message, to=to, expected_version=expected_version)

    async def schedule(
        self, message: Message, *, at: datetime, key: str, to: str | None = None
    ) -> Envelope:
        return await self._stored.schedule(message, at=at, key=key, to=to)

    async def cancel_timer(self, key: str) -> bool:
        return await self._stored.cancel_timer(key)


def divert(stored: Writer, direct: PublishAfterSuccess, kinds: frozenset[str]) -> Writer:
    """``stored`` itself when nothing is publish-only, else a writer that diverts those kinds."""
    return _Diverting(stored, direct, kinds) if kinds else stored


async def publish_at_most_once(bus: Bus, messages: Sequence[RawMessage]) -> None:
    """Publish what was diverted; a broker outage loses it (the next periodic report replaces it)."""
    if not messages:
        return
    try:
        await bus.publish(messages)
    except ConnectionError as exc:
        log.warning("publish_only.not_sent", count=len(messages), error=repr(exc))


def _describe_current() -> str:
    exc = sys.exc_info()[1]
    if exc is None:
        return "unknown error"
    frames = traceback.format_exception(exc, limit=-3)
    return "".join(frames).strip()[-2000:]
