"""``AmqpBus``: the ``Bus`` on RabbitMQ through aio-pika.

Topology, all names prefixed by the namespace ``ns``:
- ``ns.events``, ``ns.commands``: durable topic exchanges that publishers use.
- ``ns.<queue>``: a durable queue per consumer group, bound by the subscriber's patterns and to
  ``ns.requeue`` (direct) under its own name, which is how delayed retries come back.
- ``ns.retry.<ms>``: a fanout exchange + queue per retry delay with that TTL and ``ns.requeue`` as its
  dead-letter exchange; one TTL per queue, so a long delay never holds up a short one.
- ``ns.<queue>.dlq``: the dead-letter queue; messages keep their headers plus reason and error.

The connection is aio-pika's robust connection: after a broken connection it reconnects with backoff,
re-declares exchanges, queues and bindings, and restores consumers. A publish during the outage raises;
callers (the outbox relay) retry, and the consumers' inbox absorbs the resulting duplicates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pamqp import commands as spec
from pamqp.common import FieldValue

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
)

log = structlog.get_logger("aiostack.bus.amqp")

ORIGIN_EXCHANGE = "x-origin-exchange"
ORIGIN_ROUTING_KEY = "x-origin-routing-key"
CONFIRM_TIMEOUT_S = 30.0


class PublishNotConfirmed(ConnectionError):
    """The broker refused (nack) or never confirmed a publish."""


def _text_headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, bytes):
            headers[key] = value.decode("utf-8", "replace")
        elif isinstance(value, str | int | float | bool):
            headers[key] = str(value)
    return headers


class _AmqpDelivery:
    def __init__(self, bus: AmqpBus, queue: str, incoming: AbstractIncomingMessage) -> None:
        self._bus, self._queue, self._incoming = bus, queue, incoming
        headers = _text_headers(incoming.headers)
        exchange = headers.pop(ORIGIN_EXCHANGE, None) or bus.logical_exchange(
            incoming.exchange or ""
        )
        routing_key = headers.pop(ORIGIN_ROUTING_KEY, None) or incoming.routing_key or ""
        self._message = RawMessage(exchange, routing_key, incoming.body, headers)

    @property
    def message(self) -> RawMessage:
        return self._message

    async def ack(self) -> None:
        try:
            await self._incoming.ack()
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            # The channel died after our commit: the broker redelivers and the inbox absorbs it.
            log.warning("bus.ack_lost", queue=self._queue, error=repr(exc))

    async def retry(self, delay_ms: int, error: str) -> None:
        again = self._message.with_headers(
            **{
                ATTEMPT_HEADER: str(self._message.attempt + 1),
                ERROR_HEADER: error[:2000],
                ORIGIN_EXCHANGE: self._message.exchange,
                ORIGIN_ROUTING_KEY: self._message.routing_key,
            }
        )
        await self._bus._publish_retry(self._queue, again, delay_ms)
        await self.ack()

    async def dead_letter(self, reason: str, error: str) -> None:
        kept = self._message.with_headers(
            **{
                REASON_HEADER: reason,
                ERROR_HEADER: error[:2000],
                QUEUE_HEADER: self._queue,
                ORIGIN_EXCHANGE: self._message.exchange,
                ORIGIN_ROUTING_KEY: self._message.routing_key,
            }
        )
        await self._bus._publish_direct(self._bus.dlq_name(self._queue), kept)
        await self.ack()


class _AmqpSubscription:
    def __init__(self, channel: AbstractRobustChannel, queue: AbstractQueue, tag: str) -> None:
        self._channel, self._queue, self._tag = channel, queue, tag

    async def cancel(self) -> None:
        if self._channel.is_closed:
            return
        try:
            await self._queue.cancel(self._tag)
        finally:
            # Closing the channel returns unacked deliveries to the queue.
            await self._channel.close()


class AmqpBus:
    """Implements ``Bus`` over RabbitMQ."""

    def __init__(self, url: str, namespace: str = "aiostack") -> None:
        self._url, self._ns = url, namespace
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._retry_delays: set[int] = set()
        self._queues: set[str] = set()
        self._declare_lock = asyncio.Lock()

    # -- naming -----------------------------------------------------------------------------

    def exchange_name(self, logical: str) -> str:
        return f"{self._ns}.{logical}"

    def logical_exchange(self, physical: str) -> str:
        prefix = f"{self._ns}."
        return physical[len(prefix) :] if physical.startswith(prefix) else physical

    def queue_name(self, queue: str) -> str:
        return f"{self._ns}.{queue}"

    def dlq_name(self, queue: str) -> str:
        return f"{self._ns}.{queue}.dlq"

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._url, client_properties={"connection_name": f"aiostack:{self._ns}"}
        )
        self._publisher = await self._connection.channel(publisher_confirms=True)
        for logical in EXCHANGES:
            await self._publisher.declare_exchange(
                self.exchange_name(logical), aio_pika.ExchangeType.TOPIC, durable=True
            )
        await self._publisher.declare_exchange(
            self.exchange_name("requeue"), aio_pika.ExchangeType.DIRECT, durable=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._publisher = None

    def _channel(self) -> AbstractRobustChannel:
        if self._publisher is None:
            raise ConnectionError("AmqpBus is not started")
        return self._publisher

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, messages: Sequence[RawMessage]) -> None:
        for message in messages:
            if message.exchange not in EXCHANGES:
                raise ValueError(f"unknown exchange {message.exchange!r}")
        await self._publish_many(
            [(self.exchange_name(m.exchange), m.routing_key, m) for m in messages]
        )

    async def _publish_many(self, items: Sequence[tuple[str, str, RawMessage]]) -> None:
        """Publish pipelined and wait for every confirm.

        Each publish takes the channel's FIFO write lock before it first yields, so frames leave in
        the order of ``items`` and RabbitMQ keeps that order in every queue they reach.
        """
        publisher = self._channel()
        try:
            # The connection being back is not enough: wait until aio-pika has reopened this
            # channel, or we would publish on the old, closed one.
            await publisher.ready()
            channel = await publisher.get_underlay_channel()
        except aiormq.exceptions.ChannelInvalidStateError as exc:
            raise PublishNotConfirmed(f"publisher channel unavailable: {exc!r}") from exc
        pending = [
            asyncio.ensure_future(
                channel.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=self._properties(message),
                )
            )
            for exchange, routing_key, message in items
        ]
        try:
            # Bounded: a silently dropped connection must not stall the relay until heartbeats
            # notice; an unconfirmed batch is simply published again.
            results = await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), CONFIRM_TIMEOUT_S
            )
        except TimeoutError as exc:
            raise PublishNotConfirmed(f"no confirm within {CONFIRM_TIMEOUT_S}s") from exc
        for result in results:
            if isinstance(result, BaseException):
                raise PublishNotConfirmed(f"publish failed: {result!r}") from result
            if not isinstance(result, spec.Basic.Ack):
                raise PublishNotConfirmed(f"broker did not confirm: {result!r}")

    @staticmethod
    def _properties(message: RawMessage) -> spec.Basic.Properties:
        headers: dict[str, FieldValue] = dict(message.headers)
        return spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=message.message_id or None,
            message_type=message.headers.get("kind"),
            correlation_id=message.headers.get("correlation_id"),
            app_id=message.headers.get("source"),
            headers=headers,
        )

    async def _publish_direct(self, queue: str, message: RawMessage) -> None:
        await self._publish_many([("", queue, message)])

    async def _publish_retry(self, queue: str, message: RawMessage, delay_ms: int) -> None:
        exchange = f"{self._ns}.retry.{delay_ms}"
        if delay_ms not in self._retry_delays:
            async with self._declare_lock:
                channel = self._channel()
                await channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT, durable=True)
                retry_queue = await channel.declare_queue(
                    exchange,
                    durable=True,
                    arguments={
                        "x-message-ttl": delay_ms,
                        "x-dead-letter-exchange": self.exchange_name("requeue"),
                    },
                )
                await retry_queue.bind(exchange, routing_key="")
                self._retry_delays.add(delay_ms)
        # The routing key survives dead-lettering, so the requeue exchange finds the source queue.
        await self._publish_many([(exchange, self.queue_name(queue), message)])

    # -- consuming --------------------------------------------------------------------------

    async def _declare_on(
        self, channel: AbstractRobustChannel, queue: str, bindings: Sequence[Binding]
    ) -> AbstractQueue:
        name = self.queue_name(queue)
        self._queues.add(queue)
        declared = await channel.declare_queue(name, durable=True)
        await declared.bind(self.exchange_name("requeue"), routing_key=name)
        for binding in bindings:
            await declared.bind(self.exchange_name(binding.exchange), routing_key=binding.pattern)
        await channel.declare_queue(self.dlq_name(queue), durable=True)
        return declared

    async def declare(self, queue: str, bindings: Sequence[Binding]) -> None:
        async with self._declare_lock:
            await self._declare_on(self._channel(), queue, bindings)

    async def subscribe(
        self, queue: str, bindings: Sequence[Binding], handler: DeliveryHandler, prefetch: int
    ) -> _AmqpSubscription:
        if self._connection is None:
            raise ConnectionError("AmqpBus is not started")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await self._declare_on(channel, queue, bindings)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            await handler(_AmqpDelivery(self, queue, incoming))

        tag = await declared.consume(on_message)
        return _AmqpSubscription(channel, declared, tag)

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        if self._connection is None:
            raise ConnectionError("AmqpBus is not started")
        taken: list[DeadLetter] = []
        async with self._connection.channel() as channel:
            dlq = await channel.declare_queue(self.dlq_name(queue), durable=True)
            while (incoming := await dlq.get(fail=False)) is not None:
                headers = _text_headers(incoming.headers)
                exchange = headers.pop(ORIGIN_EXCHANGE, "")
                routing_key = headers.pop(ORIGIN_ROUTING_KEY, "")
                message = RawMessage(exchange, routing_key, incoming.body, headers)
                taken.append(
                    DeadLetter(
                        message, headers.get(REASON_HEADER, ""), headers.get(ERROR_HEADER, "")
                    )
                )
                await incoming.ack()
        return taken

    async def delete_queue(self, queue: str) -> None:
        self._queues.discard(queue)
        if self._connection is None:
            return
        async with self._connection.channel() as channel:
            for name in (self.queue_name(queue), self.dlq_name(queue)):
                await channel.queue_delete(name)

    async def delete_topology(self) -> None:
        """Remove this namespace's exchanges and retry queues (test clean-up)."""
        if self._connection is None:
            return
        for queue in list(self._queues):
            await self.delete_queue(queue)
        async with self._connection.channel() as channel:
            for delay in self._retry_delays:
                await channel.queue_delete(f"{self._ns}.retry.{delay}")
                await channel.exchange_delete(f"{self._ns}.retry.{delay}")
            for logical in (*EXCHANGES, "requeue"):
                await channel.exchange_delete(self.exchange_name(logical))
