"""The compute benchmark's baselines and direct probes (no gateway, no bus in the way).

- :func:`bare_saga_writes`: per server, the single-row commits a boot and a delete take in the
  control plane (create, schedule, spawn, activate, delete request, destroy, deleted: 8), on a
  scratch table, at the same concurrency: what PostgreSQL alone allows.
- :func:`bare_page_sql` / :func:`bare_http`: the detail page's SQL alone, and an aiohttp handler
  serialising a body of the same size (the floor of any JSON API on this machine).
- :func:`pure_choose` / :func:`full_scheduler_handler`: the scheduler's pure decision over the
  registered hosts, and its whole handler in a transaction that is rolled back.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
import structlog
from aiohttp import web

from cloud.runtime.actor import Context
from cloud.runtime.clock import SystemClock
from cloud.scheduler.actor import Scheduler
from cloud.scheduler.filters import Request, choose
from cloud.scheduler.request import load_hosts
from cloud.store.writes import PendingWrites, UnitOfWork
from schemas import Envelope
from schemas.compute import FlavorSpec, InstanceRequested

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
SAGA_COMMITS = 8


async def bare_saga_writes(
    pool: asyncpg.Pool, servers: int, concurrency: int
) -> tuple[float, list[float]]:
    """Seconds for ``servers`` x 8 single-row commits, ``concurrency`` servers at a time."""
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bench_saga (id text PRIMARY KEY, step int, body jsonb)"
    )
    ids = iter(range(servers))
    spent: list[float] = []

    async def worker() -> None:
        for i in ids:
            key, started = f"s{i}-{uuid.uuid4().hex[:6]}", time.perf_counter()
            await pool.execute("INSERT INTO bench_saga VALUES ($1, 0, '{}')", key)
            for step in range(1, SAGA_COMMITS - 1):
                await pool.execute("UPDATE bench_saga SET step = $2 WHERE id = $1", key, step)
            await pool.execute("DELETE FROM bench_saga WHERE id = $1", key)
            spent.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await pool.execute("DROP TABLE bench_saga")
    return seconds, spent


async def seed_servers(pool: asyncpg.Pool, project: str, count: int) -> None:
    """``count`` ACTIVE servers of ``project`` written directly (booting 10,000 is not the point).

    No host: a host's reports would reconcile them (they are on no hypervisor).
    """
    await pool.execute(
        """INSERT INTO cmp_instances (id, name, project_id, user_id, image_ref, flavor_id, flavor,
                                      vm_state, power_state, status, launched_at, created_at,
                                      updated_at, availability_zone)
           SELECT gen_random_uuid()::text, 'seed-' || g, $1, 'bench', '', '1', $2::jsonb,
                  'active', 1, 'ACTIVE', now(), now() - g * interval '1 ms', now(), 'nova'
           FROM generate_series(1, $3) AS g""",
        project,
        TINY.model_dump_json(),
        count,
    )
    await pool.execute("ANALYZE cmp_instances")


async def bare_page_sql(pool: asyncpg.Pool, project: str, limit: int) -> None:
    await pool.fetch(
        """SELECT * FROM cmp_instances WHERE project_id = $1 AND deleted_at IS NULL
           ORDER BY created_at DESC, id DESC LIMIT $2""",
        project,
        limit,
    )


async def bare_http(body_bytes: int, repeats: int) -> list[float]:
    """GET on an aiohttp handler that serialises a body of about ``body_bytes`` per request."""
    per_item = 1500
    items = [
        {"id": str(uuid.uuid4()), "pad": "x" * (per_item - 60)}
        for _ in range(max(1, body_bytes // per_item))
    ]

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"servers": items}), content_type="application/json")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    spent: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(repeats + 1):
                started = time.perf_counter()
                async with session.get(f"http://127.0.0.1:{port}/") as reply:
                    await reply.read()
                if i:  # the first is a warm-up
                    spent.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return spent


async def pure_choose(pool: asyncpg.Pool, repeats: int) -> list[float]:
    async with pool.acquire() as conn:
        hosts = await load_hosts(conn)
    req = Request(vcpus=1, ram_mb=512, disk_gb=1, now=datetime.now(UTC))
    choose(hosts, req)  # warm-up
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        decision = choose(hosts, req)
        spent.append(time.perf_counter() - started)
    if not decision.hosts:
        raise RuntimeError(f"choose() found no host: {decision.why}")
    return spent


async def full_scheduler_handler(pool: asyncpg.Pool, repeats: int) -> list[float]:
    """``Scheduler.place`` on a fresh instance row, in a transaction rolled back each time."""
    scheduler, clock = Scheduler(), SystemClock()
    log = structlog.get_logger("bench.scheduler")
    spent = []
    for i in range(repeats + 1):
        instance_id = str(uuid.uuid4())
        msg = InstanceRequested(
            instance_id=instance_id, project_id="bench", name="s", flavor=TINY, image_ref=""
        )
        envelope = Envelope.first(msg, "bench", at=clock.now())
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute(
                    """INSERT INTO cmp_instances (id, name, project_id, user_id, flavor_id, flavor,
                                                  task_state)
                       VALUES ($1, 's', 'bench', 'bench', '1', $2::jsonb, 'scheduling')""",
                    instance_id,
                    TINY.model_dump_json(),
                )
                uow = UnitOfWork(
                    conn, PendingWrites(4), source="bench", clock=clock, cause=envelope
                )
                ctx = Context(envelope, uow, clock, log, conn)
                started = time.perf_counter()
                await scheduler.place(msg, ctx)
                if i:  # the first is a warm-up
                    spent.append(time.perf_counter() - started)
            finally:
                await transaction.rollback()
    return spent
