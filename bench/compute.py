"""Compute at scale: 1,000 fake hosts, 1,000 servers booted and deleted through the REST API.

One run, on this machine, real RabbitMQ and PostgreSQL, the cloud as separate ``aiostack run``
processes (:mod:`bench.compute_cloud`), measured from this process:

- boot then delete ``servers`` servers at ``concurrency`` through ``POST`` / ``DELETE
  /servers``: servers/s, p50/p99 time to ACTIVE and to gone; baseline: the same number of
  single-row PostgreSQL transactions the saga takes per server, at the same concurrency;
- ``GET /servers/detail?limit=1000`` with 10,000 servers present; baselines: the bare SQL of
  that page, and a bare aiohttp handler answering a body of the same size;
- the scheduler's decision at 1,000 hosts: the pure ``choose()`` call, and the full handler
  (load hosts, filter, weigh, claim) in a transaction that is rolled back.

Targets: >= 50 boot+delete/s, median time to ACTIVE < 1 s, detail list < 300 ms, scheduling
< 10 ms. ``python -m bench --only compute`` (``--quick``: 50 hosts, 100 servers).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from bench.compute_cloud import Client, Watcher, login, make_image, running, unlimited_quota, until
from bench.compute_probes import (
    bare_http,
    bare_page_sql,
    bare_saga_writes,
    full_scheduler_handler,
    pure_choose,
    seed_servers,
)
from bench.database import fresh_database
from bench.stats import Result, percentile


@dataclass(frozen=True)
class Scale:
    hosts: int = 1000
    servers: int = 1000
    concurrency: int = 50
    listed: int = 10_000
    page: int = 1000
    repeats: int = 20

    @classmethod
    def quick(cls) -> Scale:
        return cls(hosts=50, servers=100, concurrency=10, listed=1000, page=100, repeats=5)


async def _pool_of(
    concurrency: int, count: int, job: Callable[[int], Awaitable[float]]
) -> list[float]:
    """Run ``job(i)`` for i in range(count), ``concurrency`` at a time; their results in order."""
    results: list[float] = [0.0] * count
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            results[i] = await job(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


STAGES = (
    ("compute.instance.requested", "gateway accepted"),
    ("compute.instance.scheduled", "scheduled"),
    ("compute.instance.spawned", "spawned on its host"),
    ("compute.instance.activated", "ACTIVE recorded"),
)


async def stage_breakdown(pool: asyncpg.Pool, servers: Sequence[str]) -> str:
    """Median time between the build's events (from the event log): where a boot waits."""
    rows = await pool.fetch(
        """SELECT stream_id, kind, occurred_at FROM events
           WHERE stream_id = ANY($1::text[]) AND kind = ANY($2::text[])""",
        [f"instance:{s}" for s in servers],
        [kind for kind, _ in STAGES],
    )
    at: dict[tuple[str, str], float] = {
        (r["stream_id"], r["kind"]): r["occurred_at"].timestamp() for r in rows
    }
    parts = []
    for (before, _), (after, name) in itertools.pairwise(STAGES):
        gaps = [
            at[(f"instance:{s}", after)] - at[(f"instance:{s}", before)]
            for s in servers
            if (f"instance:{s}", after) in at and (f"instance:{s}", before) in at
        ]
        parts.append(f"{name} +{1000 * percentile(gaps, 50):,.0f} ms")
    return "boot stages, median after the previous one: " + ", ".join(parts)


async def _boot_and_delete(
    client: Client, watcher: Watcher, image: str, scale: Scale, pool: asyncpg.Pool | None = None
) -> list[Result]:
    servers: list[str] = [""] * scale.servers
    accepted: list[float] = []  # POST to its 202

    async def boot(i: int) -> float:
        started = time.perf_counter()
        body = {"server": {"name": f"bench-{i}", "imageRef": image, "flavorRef": "1"}}
        async with client.session.post(
            f"{client.url}/compute/v2.1/servers", json=body, headers=client.headers
        ) as reply:
            if reply.status != 202:
                raise RuntimeError(f"boot: {reply.status} {await reply.text()}")
            servers[i] = str((await reply.json())["server"]["id"])
        accepted.append(time.perf_counter() - started)
        return await watcher.wait(servers[i], "ACTIVE") - started

    async def delete(i: int) -> float:
        started = time.perf_counter()
        async with client.session.delete(
            f"{client.url}/compute/v2.1/servers/{servers[i]}", headers=client.headers
        ) as reply:
            if reply.status != 204:
                raise RuntimeError(f"delete: {reply.status} {await reply.text()}")
        return await watcher.wait(servers[i], "GONE") - started

    started = time.perf_counter()
    to_active = await _pool_of(scale.concurrency, scale.servers, boot)
    booted_s = time.perf_counter() - started
    stages = await stage_breakdown(pool, servers) if pool is not None else ""
    started = time.perf_counter()
    to_gone = await _pool_of(scale.concurrency, scale.servers, delete)
    deleted_s = time.perf_counter() - started
    n = scale.servers
    cycle = Result(f"compute: boot+delete {n:,} servers", "compute.cycle", n, booted_s + deleted_s)
    cycle.notes.append(
        f"{n:,} servers on {scale.hosts:,} fake hosts, {scale.concurrency} at a time; boots "
        f"{booted_s:.1f} s, deletes {deleted_s:.1f} s; states read by one watcher query per 10 ms"
    )
    cycle.notes.append(
        f"POST /servers answered 202 in p50 {1000 * percentile(accepted, 50):,.0f} ms, "
        f"p99 {1000 * percentile(accepted, 99):,.0f} ms (part of the time to ACTIVE)"
    )
    cycle.notes.append(stages)
    return [
        Result("compute: boot, POST to ACTIVE", "compute.boot", n, booted_s, to_active),
        Result("compute: delete, DELETE to gone", "compute.delete", n, deleted_s, to_gone),
        cycle,
    ]


async def _timed(repeats: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    await call()  # warm-up: caches, plans, connections
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        spent.append(time.perf_counter() - started)
    return spent


async def _detail_list(client: Client, pool: asyncpg.Pool, scale: Scale) -> list[Result]:
    await seed_servers(pool, client.project, scale.listed)
    url = f"{client.url}/compute/v2.1/servers/detail?limit={scale.page}"
    size = 0

    async def page() -> None:
        nonlocal size
        async with client.session.get(url, headers=client.headers) as reply:
            if reply.status != 200:
                raise RuntimeError(f"detail: {reply.status} {await reply.text()}")
            body = await reply.read()
            size = len(body)

    spent = await _timed(scale.repeats, page)
    label = f"compute: GET /servers/detail?limit={scale.page} of {scale.listed:,}"
    api = Result(label, "compute.detail", scale.repeats, sum(spent), spent)
    api.notes.append(f"response body {size / 1024:,.0f} KiB")
    sql = await _timed(scale.repeats, lambda: bare_page_sql(pool, client.project, scale.page))
    http = await bare_http(size, scale.repeats)
    return [
        api,
        Result(
            f"baseline: bare SQL of that page ({scale.page:,} rows)",
            "compute.detail.sql",
            scale.repeats,
            sum(sql),
            sql,
        ),
        Result(
            "baseline: bare aiohttp, same body size",
            "compute.detail.http",
            scale.repeats,
            sum(http),
            http,
        ),
    ]


async def _scheduling(pool: asyncpg.Pool, scale: Scale) -> list[Result]:
    hosts = await pool.fetchval("SELECT count(*) FROM cmp_hosts")
    pure = await pure_choose(pool, scale.repeats * 10)
    full = await full_scheduler_handler(pool, scale.repeats)
    return [
        Result(
            f"scheduler: choose() over {hosts:,} hosts",
            "compute.choose",
            len(pure),
            sum(pure),
            pure,
        ),
        Result(
            f"scheduler: full handler, {hosts:,} hosts",
            "compute.schedule",
            len(full),
            sum(full),
            full,
        ),
    ]


async def measure(admin_dsn: str, amqp_url: str, scale: Scale) -> list[Result]:
    results: list[Result] = []
    async with fresh_database(admin_dsn) as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        try:
            seconds, saga = await bare_saga_writes(pool, scale.servers, scale.concurrency)
            label = f"baseline: {scale.servers:,} x 8 bare PostgreSQL commits"
            results.append(Result(label, "compute.baseline", scale.servers, seconds, saga))
            with tempfile.TemporaryDirectory(prefix="aiostack-bench-compute-") as tmp:
                async with (
                    running(dsn, amqp_url, scale.hosts, Path(tmp)) as cloud,
                    aiohttp.ClientSession() as session,
                ):
                    client = await login(session, cloud)
                    await unlimited_quota(client, pool)
                    image = await make_image(client)

                    async def all_hosts() -> bool:
                        n = await pool.fetchval("SELECT count(*) FROM cmp_hosts")
                        return bool(n >= scale.hosts)

                    await until(all_hosts, "every fake host reported", 120, cloud)
                    watcher = Watcher(pool)
                    watching = asyncio.ensure_future(watcher.run())
                    try:
                        warm = Scale(servers=min(20, scale.servers), concurrency=10)
                        await _boot_and_delete(client, watcher, image, warm)
                        results += await _boot_and_delete(client, watcher, image, scale, pool)
                    finally:
                        watching.cancel()
                    results += await _detail_list(client, pool, scale)
                    results += await _scheduling(pool, scale)
        finally:
            await pool.close()
    return results


def targets(results: Sequence[Result]) -> str:
    """The compute targets, each PASS or MISS."""
    by_key = {r.key: r for r in results if r.error is None}

    Check = Callable[[Result], bool]
    Shown = Callable[[Result], str]

    def row(key: str, name: str, goal: str, shown: Shown, ok: Check) -> str:
        result = by_key.get(key)
        if result is None:
            return f"{name:<40} {goal:<16} {'not run':<28} MISS"
        return f"{name:<40} {goal:<16} {shown(result):<28} {'PASS' if ok(result) else 'MISS'}"

    lines = [
        row("compute.cycle", "compute: boot+delete per second", ">= 50/s",
            lambda r: f"{r.rate:,.1f}/s", lambda r: r.rate >= 50),
        row("compute.boot", "compute: median time to ACTIVE", "< 1 s",
            lambda r: f"{r.p50_ms:,.0f} ms (p99 {r.p99_ms:,.0f})", lambda r: r.p50_ms < 1000),
        row("compute.detail", "compute: detail list of 1,000/10,000", "< 300 ms",
            lambda r: f"{r.p50_ms:,.0f} ms (p99 {r.p99_ms:,.0f})", lambda r: r.p50_ms < 300),
        row("compute.schedule", "compute: scheduling decision", "< 10 ms",
            lambda r: f"{r.p50_ms:,.1f} ms (choose {_p50(by_key, 'compute.choose')})",
            lambda r: r.p50_ms < 10),
    ]  # fmt: skip
    return "\n".join(["compute targets", *lines])


def _p50(by_key: dict[str, Result], key: str) -> str:
    found = by_key.get(key)
    return "-" if found is None else f"{1000 * percentile(found.latencies, 50):.2f} ms"
