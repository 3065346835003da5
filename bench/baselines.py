"""Baselines: what the raw client libraries do on this machine, without aiostack in between.

- aio-pika: one connection, a confirming publisher channel and a consuming channel, a durable topic
  exchange and queue, persistent messages with the same headers and body size aiostack sends.
  Published once as a naive client does (each publish awaited, so one confirm outstanding), once
  pipelined (a sliding window of outstanding confirms), and once at the paced rate (open loop, a
  task per publish). Latency: publish start (paced: the instant it was due) -> consumer callback.
- asyncpg: rows of the same shape inserted in transactions of ``pg_batch`` rows, once with
  ``executemany`` and once with one ``unnest`` statement. Latency: per transaction (BEGIN..COMMIT).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import asyncpg
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bench.config import Settings
from bench.cpu import CpuMeter
from bench.messages import Tick
from bench.stats import Result
from cloud.runtime.bus import envelope_headers
from schemas import Envelope, encode

Publisher = Callable[[AbstractExchange, int, list[float]], Awaitable[None]]


def _sample() -> tuple[bytes, dict[str, str]]:
    """A body and headers of the size aiostack puts on the wire for one ``Tick``."""
    tick = Tick(stream="s0", seq=123456, sent=time.perf_counter())
    return encode(tick), envelope_headers(Envelope.first(tick, "bench@bench"))


def _message(body: bytes, headers: dict[str, str], seq: int) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers=dict(headers),
        message_id=str(seq),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def amqp_baselines(settings: Settings) -> list[Result]:
    """The aio-pika variants, each on its own freshly declared exchange and queue."""
    body, headers = _sample()

    async def naive(exchange: AbstractExchange, count: int, sent: list[float]) -> None:
        for seq in range(count):
            sent[seq] = time.perf_counter()
            await exchange.publish(_message(body, headers, seq), routing_key="bench.tick")

    async def pipelined(exchange: AbstractExchange, count: int, sent: list[float]) -> None:
        window = asyncio.Semaphore(settings.window)
        failures: list[BaseException] = []

        async def one(seq: int) -> None:
            try:
                await exchange.publish(_message(body, headers, seq), routing_key="bench.tick")
            except Exception as exc:
                failures.append(exc)
            finally:
                window.release()

        tasks = []
        for seq in range(count):
            await window.acquire()
            sent[seq] = time.perf_counter()
            tasks.append(asyncio.create_task(one(seq)))
        await asyncio.gather(*tasks)
        if failures:
            raise RuntimeError(f"{len(failures)} publishes failed: {failures[0]!r}")

    async def paced(exchange: AbstractExchange, count: int, sent: list[float]) -> None:
        tasks = []
        started = time.perf_counter() + 0.005
        for seq in range(count):
            sent[seq] = due = started + seq / settings.rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            message = _message(body, headers, seq)
            tasks.append(asyncio.create_task(exchange.publish(message, routing_key="bench.tick")))
        await asyncio.gather(*tasks)

    return [
        await _amqp_run(
            settings,
            "baseline.amqp.naive",
            "baseline aio-pika confirm, awaited 1 by 1",
            settings.naive_events,
            naive,
        ),
        await _amqp_run(
            settings,
            "baseline.amqp.pipelined",
            f"baseline aio-pika confirm, {settings.window} in flight",
            settings.events,
            pipelined,
        ),
        await _amqp_run(
            settings,
            "baseline.amqp.paced",
            f"baseline aio-pika confirm, paced {settings.rate:,.0f}/s",
            settings.paced_events,
            paced,
        ),
    ]


async def _amqp_run(
    settings: Settings, key: str, path: str, count: int, publish: Publisher
) -> Result:
    name = f"bench{uuid.uuid4().hex[:10]}.raw"
    sent = [0.0] * count
    latencies: list[float] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=settings.prefetch)
        exchange = await publisher.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await consumer.declare_queue(name, durable=True)
        await queue.bind(name, routing_key="bench.#")

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            latencies.append(time.perf_counter() - sent[int(incoming.message_id or 0)])
            await incoming.ack()
            if len(latencies) >= count:
                done.set()

        await queue.consume(on_message)
        meter, started = CpuMeter(), time.perf_counter()
        await publish(exchange, count, sent)
        complete = True
        try:
            await asyncio.wait_for(done.wait(), settings.timeout_s)
        except TimeoutError:
            complete = False
        seconds = time.perf_counter() - started
        cpu = meter.report()
        await consumer.close()
        await publisher.queue_delete(name)
        await publisher.exchange_delete(name)
    finally:
        await connection.close()
    notes = [
        f"prefetch {settings.prefetch}, manual ack per message, persistent messages",
        cpu,
    ]
    return Result(path, key, len(latencies), seconds, latencies, notes, complete)


_BASELINE_DDL = """CREATE TABLE bench_rows (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream text NOT NULL,
    n integer NOT NULL,
    body jsonb NOT NULL)"""


async def pg_baselines(settings: Settings, dsn: str) -> list[Result]:
    """executemany and unnest inserts of ``events`` rows, ``pg_batch`` rows per transaction."""
    body = encode(Tick(stream="s0", seq=123456, sent=time.perf_counter())).decode()
    rows = [(f"s{i % settings.streams}", i, body) for i in range(settings.events)]
    batches = [rows[i : i + settings.pg_batch] for i in range(0, len(rows), settings.pg_batch)]

    async def executemany(conn: asyncpg.Connection, batch: list[tuple[str, int, str]]) -> None:
        await conn.executemany(
            "INSERT INTO bench_rows (stream, n, body) VALUES ($1, $2, $3::jsonb)", batch
        )

    async def unnest(conn: asyncpg.Connection, batch: list[tuple[str, int, str]]) -> None:
        streams, numbers, bodies = zip(*batch, strict=True)
        await conn.execute(
            """INSERT INTO bench_rows (stream, n, body)
               SELECT * FROM unnest($1::text[], $2::int[], $3::jsonb[])""",
            list(streams),
            list(numbers),
            list(bodies),
        )

    conn = await asyncpg.connect(dsn)
    results = []
    try:
        for label, insert in (("executemany", executemany), ("unnest", unnest)):
            await conn.execute(_BASELINE_DDL)
            latencies = []
            meter, started = CpuMeter(), time.perf_counter()
            for batch in batches:
                began = time.perf_counter()
                async with conn.transaction():
                    await insert(conn, batch)
                latencies.append(time.perf_counter() - began)
            seconds = time.perf_counter() - started
            await conn.execute("DROP TABLE bench_rows")
            path = f"baseline asyncpg {label}, {settings.pg_batch} rows/tx"
            notes = ["latency = one transaction (BEGIN..COMMIT) of a batch", meter.report()]
            results.append(
                Result(path, f"baseline.pg.{label}", len(rows), seconds, latencies, notes)
            )
    finally:
        await conn.close()
    return results
