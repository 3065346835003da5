"""Runs actors and the runtime's own loops in one process, restarting what crashes.

Per actor: a consumer, a heartbeat, and (if it has one) a ticker. With a store: the outbox relay, the
timer service and the inbox janitor. Shutdown order matters: stop consuming (the batch in hand
finishes and is acked), stop the loops, let the relay drain the outbox, then close bus and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata

import structlog

from cloud.runtime.actor import Actor, Context
from cloud.runtime.backoff import Backoff
from cloud.runtime.bus import EVENTS, Bus, RawMessage, envelope_headers
from cloud.runtime.clock import Clock, SystemClock
from cloud.runtime.consumer import (
    Consumer,
    ConsumerOptions,
    PublishAfterSuccess,
    divert,
    publish_at_most_once,
)
from cloud.store.db import Store
from cloud.store.relay import OutboxRelay
from cloud.store.timers import TimerService
from schemas import Envelope, encode
from schemas.system import ServiceHeartbeat

log = structlog.get_logger("aiostack.supervisor")


def aiostack_version() -> str:
    try:
        return metadata.version("aiostack")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class RuntimeOptions:
    host: str
    consumer: ConsumerOptions = field(default_factory=ConsumerOptions)
    heartbeat_interval_s: float = 5.0
    outbox_partitions: int = 8
    outbox_batch: int = 500
    outbox_poll_s: float = 1.0
    timer_poll_s: float = 0.5
    inbox_retention_s: float = 7 * 86400
    shutdown_grace_s: float = 10.0


class Supervisor:
    def __init__(
        self,
        bus: Bus,
        store: Store | None,
        actors: Sequence[Actor],
        options: RuntimeOptions,
        clock: Clock | None = None,
    ) -> None:
        self._bus, self._store, self._actors, self._options = bus, store, actors, options
        self._clock: Clock = clock or (store.clock if store else SystemClock())
        self._consumers: dict[str, Consumer] = {}
        self._relay: OutboxRelay | None = None
        self._stopping = False
        self.started_at = self._clock.now()
        self.ready = asyncio.Event()  # set once every actor's queue is declared and consumed
        self._started: set[str] = set()

    @property
    def relay(self) -> OutboxRelay | None:
        return self._relay

    def consumer(self, actor_name: str) -> Consumer:
        return self._consumers[actor_name]

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully."""
        loops: list[asyncio.Task[None]] = []
        relay_task: asyncio.Task[None] | None = None
        if self._store is not None:
            self._relay = OutboxRelay(
                self._store.pool,
                self._bus,
                partitions=self._options.outbox_partitions,
                batch=self._options.outbox_batch,
                poll_s=self._options.outbox_poll_s,
            )
            self._store.on_commit(self._relay.nudge)
            relay_task = self._spawn("relay", self._relay.run)
            timers = TimerService(self._store, poll_s=self._options.timer_poll_s)
            loops.append(self._spawn("timers", timers.run))
            loops.append(self._spawn("inbox-janitor", self._prune_inbox))
        consumers = [
            self._spawn(f"consumer:{a.name}", self._consume_factory(a)) for a in self._actors
        ]
        for actor in self._actors:
            loops.append(self._spawn(f"heartbeat:{actor.name}", self._heartbeat_factory(actor)))
            if actor.tick_interval > 0:
                loops.append(self._spawn(f"tick:{actor.name}", self._tick_factory(actor)))
        log.info(
            "supervisor.started", actors=[a.name for a in self._actors], host=self._options.host
        )
        await stop.wait()

        log.info("supervisor.stopping")
        self._stopping = True
        await asyncio.gather(*(c.stop() for c in self._consumers.values()))
        await asyncio.gather(*consumers, return_exceptions=True)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        for actor in self._actors:
            try:
                await actor.close()
            except Exception:  # one actor's failed cleanup must not keep the others open
                log.exception("actor.close_failed", actor=actor.name)
        if self._relay is not None and relay_task is not None:
            self._relay.stop()
            try:
                await asyncio.wait_for(relay_task, self._options.shutdown_grace_s)
            except TimeoutError:
                log.error("supervisor.outbox_not_drained", grace_s=self._options.shutdown_grace_s)
        log.info("supervisor.stopped")

    def _spawn(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._supervise(name, body), name=name)

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body``; if it crashes, log it and start it again after a backoff."""
        backoff = Backoff(first_s=0.2, max_s=30.0)
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping:
                    log.exception("task.crashed_while_stopping", task=name)
                    return
                delay = backoff.next()
                log.exception("task.crashed", task=name, restart_in_s=round(delay, 2))
                await asyncio.sleep(delay)

    def _consume_factory(self, actor: Actor) -> Callable[[], Awaitable[None]]:
        async def consume() -> None:
            if self._stopping:
                return
            consumer = Consumer(
                actor,
                self._bus,
                self._store,
                options=self._options.consumer,
                clock=self._clock,
                source=f"{actor.name}@{self._options.host}",
            )
            self._consumers[actor.name] = consumer
            try:
                await consumer.start()
                self._started.add(actor.name)
                if len(self._started) == len(self._actors):
                    self.ready.set()
                await consumer.wait()
            finally:
                await consumer.stop()

        return consume

    def _heartbeat_factory(self, actor: Actor) -> Callable[[], Awaitable[None]]:
        version, binary = aiostack_version(), f"aiostack-{actor.name}"

        async def beat() -> None:
            while True:
                heartbeat = ServiceHeartbeat(
                    host=self._options.host,
                    binary=binary,
                    version=version,
                    started_at=self.started_at,
                    readiness=actor.readiness(),
                )
                envelope = Envelope.first(
                    heartbeat, f"{actor.name}@{self._options.host}", at=self._clock.now()
                )
                try:
                    await self._bus.publish(
                        [
                            RawMessage(
                                EVENTS,
                                heartbeat.kind,
                                encode(heartbeat),
                                envelope_headers(envelope),
                            )
                        ]
                    )
                except ConnectionError as exc:
                    log.warning("heartbeat.not_sent", actor=actor.name, error=str(exc))
                await asyncio.sleep(self._options.heartbeat_interval_s)

        return beat

    def _tick_factory(self, actor: Actor) -> Callable[[], Awaitable[None]]:
        async def tick() -> None:
            bound = structlog.get_logger("aiostack.tick").bind(actor=actor.name)
            while True:
                await asyncio.sleep(actor.tick_interval)
                source = f"{actor.name}@{self._options.host}"
                if self._store is None:  # an agent: what the tick emits is published directly
                    buffer = PublishAfterSuccess(source, self._clock, None)
                    await actor.tick(Context(None, buffer, self._clock, bound, None))
                    await self._bus.publish(buffer.messages)
                    continue
                direct = PublishAfterSuccess(source, self._clock, None)
                kinds = self._options.consumer.publish_only
                async with self._store.unit(source=source) as uow:
                    writer = divert(uow, direct, kinds)
                    await actor.tick(Context(None, writer, uow.clock, bound, uow.conn))
                await publish_at_most_once(self._bus, direct.messages)

        return tick

    async def _prune_inbox(self) -> None:
        while True:
            if self._store is not None:
                cutoff: datetime = self._clock.now()
                await self._store.pool.execute(
                    "DELETE FROM inbox WHERE processed_at < $1::timestamptz - make_interval(secs => $2)",
                    cutoff,
                    self._options.inbox_retention_s,
                )
            await asyncio.sleep(600)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
