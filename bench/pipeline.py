"""The aiostack pipeline, end to end, as production wires it.

emit in ``store.unit`` -> outbox (+ event log) -> ``OutboxRelay`` -> bus -> ``Consumer`` of the
``Sink`` actor -> inbox commit -> ack. A ``Supervisor`` runs relay and consumer with the runtime's
defaults (flags may change prefetch, consumer batch and relay batch). Each path gets a new store
pool, a new bus (``AmqpBus`` in a private ``bench<random>`` namespace, deleted afterwards) and empty
runtime tables.

- ``throughput``: ``events`` events emitted ``batch`` per transaction as fast as the producers go;
  time from the first emit to the last inbox commit.
- ``paced``: ``rate`` events/s for ``seconds``, open loop (a late commit does not delay the next
  emit); each event is stamped with the instant it was scheduled for, so producer lag counts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bench.actor import Sink
from bench.config import Settings
from bench.cpu import CpuMeter
from bench.database import reset_runtime_tables
from bench.instrument import InstrumentedBus, PublishStats, Recorder
from bench.messages import Tick
from bench.stats import Result
from cloud.runtime.amqp import AmqpBus
from cloud.runtime.bus import Bus
from cloud.runtime.consumer import ConsumerOptions
from cloud.runtime.inproc import InProcBus
from cloud.runtime.supervisor import RuntimeOptions, Supervisor
from cloud.store.db import Store

SOURCE = "bench@bench"


@dataclass
class Counters:
    """Progress of each stage, sampled while a path runs to find where the backlog builds."""

    emitted: int = 0
    transactions: int = 0
    commits: int = 0  # every Store.committed(): producer units and consumer batches
    max_outbox: int = 0  # emitted, not yet published by the relay
    max_in_flight: int = 0  # published, not yet committed by the consumer
    pacer_lag: float = 0.0  # paced runs: how late the worst emit started (s)


@dataclass
class Pipeline:
    """A running supervisor with its store, bus and recorder."""

    kind: str  # "inproc" or "amqp"
    label: str
    store: Store
    bus: InstrumentedBus
    recorder: Recorder
    settings: Settings
    counters: Counters = field(default_factory=Counters)

    def reset(self, expect: int) -> None:
        self.recorder.expect(expect)
        self.counters = Counters()
        self.bus.publishes = PublishStats()

    def on_commit(self) -> None:
        self.counters.commits += 1

    async def emit(
        self,
        seqs: range,
        *,
        stamps: list[float] | None = None,
        stream: str | None = None,
        lane: int = 0,
        lanes: int = 1,
    ) -> None:
        """One transaction emitting ``Tick`` events ``seqs`` (stamped now, or with ``stamps``).

        The events go to ``stream``, or else spread over the streams of this producer's ``lane``
        (of ``lanes``): concurrent transactions never share a stream unless given the same one.
        Transactions appending to several shared streams can deadlock on the ``streams`` rows
        (``PendingWrites._claim_versions`` upserts them in first-seen order, not sorted), and
        that is not what this measures.
        """
        per_lane = max(1, self.settings.streams // lanes)
        async with self.store.unit(source=SOURCE) as uow:
            for index, seq in enumerate(seqs):
                sent = stamps[index] if stamps is not None else time.perf_counter()
                name = stream or f"s{lane + lanes * (seq % per_lane)}"
                await uow.emit(Tick(stream=name, seq=seq, sent=sent))
        self.counters.emitted += len(seqs)
        self.counters.transactions += 1

    async def sample(self) -> None:
        """Until cancelled: track the largest outbox and in-flight backlogs."""
        while True:
            counters, published = self.counters, self.bus.publishes
            counters.max_outbox = max(counters.max_outbox, counters.emitted - published.messages)
            in_flight = published.messages - self.recorder.count
            counters.max_in_flight = max(counters.max_in_flight, in_flight)
            await asyncio.sleep(0.05)

    async def wait(self) -> bool:
        """Until the recorder has every expected commit; False on timeout."""
        try:
            await asyncio.wait_for(self.recorder.done.wait(), self.settings.timeout_s)
        except TimeoutError:
            return False
        return True

    def notes(self, started: float, emit_done: float) -> list[str]:
        c, p, s = self.counters, self.bus.publishes, self.settings
        consumer_commits = max(0, c.commits - c.transactions)
        emit_s = max(emit_done - started, 1e-9)
        relay_s = max(p.last - started, 1e-9)
        lines = [
            f"emit: {c.emitted} events in {c.transactions} tx, done after {emit_s:.2f} s "
            f"({c.emitted / emit_s:,.0f} ev/s offered)",
            f"relay: {p.calls} publishes of {p.mean_batch:.0f} msgs avg, {p.mean_ms:.1f} ms avg "
            f"each, last after {relay_s:.2f} s ({p.messages / relay_s:,.0f} ev/s)",
            f"consumer: {consumer_commits} commits, {self.recorder.count / max(consumer_commits, 1):.1f}"
            f" deliveries/commit avg (prefetch {s.prefetch}, max_batch {s.max_batch})",
            f"max backlog: outbox {c.max_outbox}, published-not-committed {c.max_in_flight}",
        ]
        if c.pacer_lag > 0.001:
            lines.append(f"pacer: worst emit started {1000 * c.pacer_lag:.1f} ms late")
        return lines


def _bus(kind: str, settings: Settings) -> tuple[Bus, str]:
    if kind == "inproc":
        return InProcBus(), "InProcBus"
    return AmqpBus(settings.amqp_url, namespace=f"bench{uuid.uuid4().hex[:10]}"), "AmqpBus"


@asynccontextmanager
async def running(kind: str, settings: Settings, dsn: str) -> AsyncIterator[Pipeline]:
    """Start store, bus (``inproc`` or ``amqp``) and a supervisor running the sink; stop them."""
    store = await Store.open(
        dsn, migrate=False, partitions=settings.outbox_partitions, max_size=settings.pool_size
    )
    try:
        await reset_runtime_tables(store.pool)
        inner, label = _bus(kind, settings)
        recorder = Recorder()
        bus = InstrumentedBus(inner, recorder)
        await bus.start()
        try:
            pipeline = Pipeline(kind, label, store, bus, recorder, settings)
            store.on_commit(pipeline.on_commit)
            options = RuntimeOptions(
                host="bench",
                consumer=ConsumerOptions(prefetch=settings.prefetch, max_batch=settings.max_batch),
                heartbeat_interval_s=3600,
                outbox_partitions=settings.outbox_partitions,
                outbox_batch=settings.outbox_batch,
            )
            supervisor = Supervisor(bus, store, [Sink(recorder)], options)
            stop = asyncio.Event()
            task = asyncio.create_task(supervisor.run(stop))
            try:
                await asyncio.wait_for(supervisor.ready.wait(), 30)
                yield pipeline
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)
        finally:
            if isinstance(inner, AmqpBus):
                await inner.delete_topology()
            await bus.close()
    finally:
        await store.close()


async def _warm_up(pipeline: Pipeline) -> None:
    """Push a few events through so connections, prepared statements and caches are warm."""
    count = pipeline.settings.warmup
    pipeline.reset(count)
    for base in range(0, count, pipeline.settings.batch):
        await pipeline.emit(range(base, min(count, base + pipeline.settings.batch)))
    if not await pipeline.wait():
        raise RuntimeError(f"{pipeline.label}: warm-up events never arrived")


async def throughput(pipeline: Pipeline) -> Result:
    """``events`` events, ``batch`` per transaction, from ``producers`` concurrent tasks."""
    s = pipeline.settings
    await _warm_up(pipeline)
    pipeline.reset(s.events)
    meter = CpuMeter()
    sampler = asyncio.create_task(pipeline.sample())

    async def produce(worker: int) -> None:
        for base in range(worker * s.batch, s.events, s.batch * s.producers):
            seqs = range(base, min(s.events, base + s.batch))
            await pipeline.emit(seqs, lane=worker, lanes=s.producers)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(produce(w) for w in range(s.producers)))
        emit_done = time.perf_counter()
        complete = await pipeline.wait()
    finally:
        sampler.cancel()
    end = pipeline.recorder.last_commit if complete else time.perf_counter()
    path = f"aiostack {pipeline.label} e2e, {s.batch} ev/tx"
    notes = [*pipeline.notes(started, emit_done), meter.report()]
    return Result(
        path,
        f"{pipeline.kind}.throughput",
        pipeline.recorder.count,
        end - started,
        pipeline.recorder.latencies,
        notes,
        complete,
    )


async def _pace(pipeline: Pipeline, pace_batch: int, total: int) -> tuple[float, float]:
    """Emit ``total`` events at ``rate``, open loop; return (scheduled start, last emit done).

    Each transaction is its own task, started when its last event is due, so a slow commit does
    not hold back the next one; every event is stamped with the instant it was due.
    """
    rate = pipeline.settings.rate
    tasks: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            errors.append(error)

    started = time.perf_counter() + 0.005
    seq = 0
    while seq < total:
        upto = min(total, seq + pace_batch)
        due = started + (upto - 1) / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        counters = pipeline.counters
        counters.pacer_lag = max(counters.pacer_lag, time.perf_counter() - due)
        stamps = [started + k / rate for k in range(seq, upto)]
        # One stream per transaction, as a request changing one resource would.
        stream = f"s{(seq // pace_batch) % pipeline.settings.streams}"
        task = asyncio.create_task(pipeline.emit(range(seq, upto), stamps=stamps, stream=stream))
        tasks.add(task)
        task.add_done_callback(finished)
        seq = upto
    await asyncio.gather(*list(tasks), return_exceptions=True)
    if errors:
        raise RuntimeError(f"{len(errors)} paced transactions failed") from errors[0]
    return started, time.perf_counter()


async def paced(pipeline: Pipeline, pace_batch: int) -> Result:
    """``rate`` events/s for ``seconds``, ``pace_batch`` events per transaction.

    A first second at the same pace is not measured: the first moments after start-up (autovacuum
    noticing the fresh tables, first plans, buffers) are not the steady state.
    """
    s = pipeline.settings
    await _warm_up(pipeline)
    warm = max(pace_batch, round(s.rate * min(1.0, s.seconds / 2)))
    pipeline.reset(warm)
    await _pace(pipeline, pace_batch, warm)
    if not await pipeline.wait():
        raise RuntimeError(f"{pipeline.label}: paced warm-up events never arrived")
    pipeline.reset(s.paced_events)
    meter = CpuMeter()
    sampler = asyncio.create_task(pipeline.sample())
    try:
        started, emit_done = await _pace(pipeline, pace_batch, s.paced_events)
        complete = await pipeline.wait()
    finally:
        sampler.cancel()
    end = pipeline.recorder.last_commit if complete else time.perf_counter()
    path = f"aiostack {pipeline.label} paced {s.rate:,.0f}/s, {pace_batch} ev/tx"
    notes = [*pipeline.notes(started, emit_done), meter.report()]
    return Result(
        path,
        f"{pipeline.kind}.paced.{pace_batch}",
        pipeline.recorder.count,
        end - started,
        pipeline.recorder.latencies,
        notes,
        complete,
    )
