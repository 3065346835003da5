"""``python -m bench``: run every path against the local PostgreSQL and RabbitMQ, print the table.

Exit status: 0 when every path finished (targets missed or not), 1 when a path failed or timed out.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from collections.abc import Sequence

import asyncpg

from bench import baselines, pipeline, report
from bench.config import Settings, parse
from bench.database import fresh_database
from bench.stats import Result
from cloud.logs import configure


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


async def _server_versions(settings: Settings) -> str:
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        postgres = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"PostgreSQL {postgres} (synchronous_commit={sync})"


def _header(settings: Settings, servers: str) -> str:
    return "\n".join(
        [
            "aiostack end-to-end benchmark",
            f"  machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {servers}",
            f"  sustained: {settings.events:,} events, {settings.batch} per transaction, "
            f"{settings.producers} producer(s), {settings.streams} streams; "
            f"paced: {settings.rate:,.0f}/s for {settings.seconds:g} s, "
            f"{settings.pace_batch} per transaction",
            f"  runtime: prefetch {settings.prefetch}, consumer max_batch {settings.max_batch}, "
            f"relay batch {settings.outbox_batch}, {settings.outbox_partitions} outbox partitions",
        ]
    )


async def run(settings: Settings) -> list[Result]:
    """Every selected path, in order, each measured in this process."""
    results: list[Result] = []
    if "baseline-amqp" in settings.groups:
        _progress("aio-pika baselines")
        results += await baselines.amqp_baselines(settings)
    async with fresh_database(settings.database_url) as dsn:
        if "baseline-pg" in settings.groups:
            _progress("asyncpg baselines")
            results += await baselines.pg_baselines(settings, dsn)
        for kind in ("inproc", "amqp"):
            for measure in (pipeline.throughput, pipeline.paced):
                if f"{kind}-{measure.__name__}" not in settings.groups:
                    continue
                _progress(f"{kind} {measure.__name__}")
                async with pipeline.running(kind, settings, dsn) as running:
                    results.append(await measure(running))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(argv)
    configure("console", os.environ.get("AIOSTACK_BENCH_LOG_LEVEL", "warning"))
    started = time.perf_counter()
    servers = asyncio.run(_server_versions(settings))
    results = asyncio.run(run(settings))
    print(_header(settings, servers))
    print()
    print(report.table(results))
    print()
    print(report.targets(results))
    print()
    print(report.notes(results))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
