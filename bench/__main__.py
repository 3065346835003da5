"""``python -m bench``: run every path against the local PostgreSQL and RabbitMQ, print the table.

Exit status: 0 when every path finished (targets missed or not), 1 when a path failed or timed out,
2 when PostgreSQL or RabbitMQ cannot be reached.
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
import asyncpg

from bench import api, baselines, compute, image, libvirt_boot, pipeline, report
from bench.config import Settings, parse
from bench.database import fresh_database
from bench.stats import Result
from cloud.logs import configure


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


async def _server_versions(settings: Settings) -> str:
    """The servers' versions, which also checks that both are reachable before anything starts."""
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        postgres = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    found = f"PostgreSQL {postgres.split()[0]} (synchronous_commit={sync})"
    if not any("amqp" in group for group in settings.groups):
        return found
    broker = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        transport = broker.transport
        properties = transport.connection.server_properties if transport is not None else {}
        product, version = properties.get("product", "broker"), properties.get("version", "?")
        rabbit = " ".join(
            v.decode() if isinstance(v, bytes) else str(v) for v in (product, version)
        )
    finally:
        await broker.close()
    return f"{found}, {rabbit}"


def _header(settings: Settings, servers: str, load: tuple[float, float]) -> str:
    return "\n".join(
        [
            "aiostack end-to-end benchmark",
            f"  machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {servers}",
            f"  load average (1 min) before/after: {load[0]:.2f} / {load[1]:.2f} "
            "(other processes' CPU use skews every number)",
            f"  sustained: {settings.events:,} events, {settings.batch} per transaction, "
            f"{settings.producers} producer(s), {settings.streams} streams; "
            f"paced: {settings.rate:,.0f}/s for {settings.seconds:g} s, "
            f"{' and '.join(map(str, settings.pace_batches))} per transaction",
            f"  runtime: prefetch {settings.prefetch}, consumer max_batch {settings.max_batch}, "
            f"relay batch {settings.outbox_batch}, {settings.outbox_partitions} outbox partitions, "
            f"pool {settings.pool_size}",
        ]
    )


async def _guarded(
    label: str, key: str, body: Callable[[], Awaitable[list[Result]]]
) -> list[Result]:
    """Run one step; if it raises, report it as a failed row and go on with the next."""
    _progress(label)
    try:
        return await body()
    except Exception as exc:
        _progress(f"{label}: FAILED: {type(exc).__name__}: {exc}")
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return [Result(label, key, 0, 0.0, complete=False, error=error)]


def _pipeline_step(
    kind: str,
    settings: Settings,
    dsn: str,
    measure: Callable[[pipeline.Pipeline], Awaitable[Result]],
) -> Callable[[], Awaitable[list[Result]]]:
    async def step() -> list[Result]:
        async with pipeline.running(kind, settings, dsn) as running:
            return [await measure(running)]

    return step


async def run(settings: Settings) -> list[Result]:
    """Every selected path, in order, each measured in this process."""
    results: list[Result] = []
    groups = settings.groups
    if "baseline-amqp" in groups:
        results += await _guarded(
            "aio-pika baselines", "baseline.amqp", lambda: baselines.amqp_baselines(settings)
        )
    async with fresh_database(settings.database_url) as dsn:
        if "baseline-pg" in groups:
            results += await _guarded(
                "asyncpg baselines", "baseline.pg", lambda: baselines.pg_baselines(settings, dsn)
            )
        for kind in ("inproc", "amqp"):
            if f"{kind}-throughput" in groups:
                step = _pipeline_step(kind, settings, dsn, pipeline.throughput)
                results += await _guarded(f"{kind} throughput", f"{kind}.throughput", step)
            if f"{kind}-paced" in groups:
                for batch in settings.pace_batches:
                    measure = functools.partial(pipeline.paced, pace_batch=batch)
                    step = _pipeline_step(kind, settings, dsn, measure)
                    label = f"{kind} paced, {batch} ev/tx"
                    results += await _guarded(label, f"{kind}.paced.{batch}", step)
    if "api" in groups:  # its own database and aiostack process (bench/api.py)
        results += await _guarded("identity API", "api", lambda: api.api_bench(settings))
    if "image" in groups:  # its own database and aiostack process (bench/image.py)
        step = lambda: image.run(settings.database_url, settings.image_mib)  # noqa: E731
        results += await _guarded("image data path", "image", step)
    if "compute" in groups:  # its own database and aiostack processes (bench/compute.py)
        scale = compute.Scale.quick() if settings.quick else compute.Scale()
        step = lambda: compute.measure(settings.database_url, settings.amqp_url, scale)  # noqa: E731
        results += await _guarded("compute at scale", "compute", step)
    if "libvirt" in groups:  # its own database, aiostack process and guests (bench/libvirt_boot.py)
        step = lambda: libvirt_boot.measure(settings.database_url, settings.boots)  # noqa: E731
        results += await _guarded("libvirt boot", "libvirt", step)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    configure("console", os.environ.get("AIOSTACK_BENCH_LOG_LEVEL", "warning"))
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        servers = asyncio.run(_server_versions(settings))
    except Exception as exc:  # unreachable or refusing: say which, without a traceback
        _progress(
            f"cannot reach PostgreSQL {settings.database_url} or RabbitMQ "
            f"{settings.amqp_url}: {type(exc).__name__}: {exc}"
        )
        return 2
    results = asyncio.run(run(settings))
    print(_header(settings, servers, (load_before, os.getloadavg()[0])))
    print()
    print(report.table(results))
    print()
    print(report.targets(results))
    print()
    if "api" in settings.groups:
        print(api.targets(results))
        print()
    if "compute" in settings.groups:
        print(compute.targets(results))
        print()
    if "libvirt" in settings.groups:
        print(libvirt_boot.targets(results))
        print()
    print(report.notes(results))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
