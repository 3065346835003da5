"""The embedded PostgreSQL server: init, start, reuse, restart and recovery after kills."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from cloud.store.embedded import EmbeddedPostgres, EmbeddedPostgresError

pytestmark = pytest.mark.postgres

T = TypeVar("T")


@pytest.fixture
async def data_dir(tmp_path: Path) -> AsyncIterator[Path]:
    """A data directory under a fresh state dir; whatever runs on it is stopped afterwards."""
    path = tmp_path / "state" / "postgres"
    yield path
    # Never leave a server behind, even when the test failed halfway.
    await EmbeddedPostgres(path, dsn="").stop()


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


async def query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def longest_stall(work: Awaitable[T]) -> tuple[T, float]:
    """Run `work` while a 10 ms ticker measures the longest time the event loop was blocked."""
    done = asyncio.Event()
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        done.set()
        await ticker
    return result, max(gaps, default=0.0)


async def test_start_query_stop_restart_keeps_data(data_dir: Path) -> None:
    pg, stall = await longest_stall(EmbeddedPostgres.start(data_dir))
    # initdb + start take ~0.8 s; all of it must happen off the event loop.
    assert stall < 0.5, f"event loop blocked for {stall:.2f} s during start"
    assert pg.data_dir == data_dir  # tmp_path is already absolute and resolved
    assert (data_dir / "PG_VERSION").exists()
    assert os.stat(data_dir).st_mode & 0o777 == 0o700

    conn = await asyncpg.connect(pg.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "aiostack"
        await conn.execute("create table kept (id int primary key, name text)")
        await conn.execute("insert into kept values (1, 'survives a restart')")
    finally:
        await conn.close()

    await pg.stop()
    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(OSError):
        await query(pg.dsn, "select 1")

    again = await EmbeddedPostgres.start(data_dir)
    assert again.dsn == pg.dsn
    pool = await asyncpg.create_pool(again.dsn, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("select name from kept where id = 1") == "survives a restart"
    finally:
        await pool.close()
    await again.stop()


async def test_start_twice_reuses_the_server_and_stop_is_idempotent(data_dir: Path) -> None:
    first = await EmbeddedPostgres.start(data_dir)
    pid = postmaster_pid(data_dir)
    second = await EmbeddedPostgres.start(data_dir)
    assert postmaster_pid(data_dir) == pid, "the running server should be reused"
    assert second.dsn == first.dsn
    assert await query(second.dsn, "select 2") == 2

    await second.stop()
    await second.stop()
    await first.stop()  # the server is already down: still a no-op, not an error
    assert not (data_dir / "postmaster.pid").exists()


async def test_server_left_by_a_killed_process_is_reused(data_dir: Path) -> None:
    script = (
        "import asyncio, sys, time\n"
        "from pathlib import Path\n"
        "from cloud.store.embedded import EmbeddedPostgres\n"
        "pg = asyncio.run(EmbeddedPostgres.start(Path(sys.argv[1])))\n"
        "print(pg.dsn, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(data_dir), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    dsn = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().strip()
    child.kill()  # no stop(), no atexit: the server outlives its starter
    await child.wait()
    assert dsn.startswith("postgresql://"), "the child did not start the server"
    pid = postmaster_pid(data_dir)

    pg = await EmbeddedPostgres.start(data_dir)
    assert postmaster_pid(data_dir) == pid
    assert pg.dsn == dsn
    assert await query(pg.dsn, "select 3") == 3
    await pg.stop()


async def test_start_recovers_from_a_killed_server(data_dir: Path) -> None:
    pg = await EmbeddedPostgres.start(data_dir)
    conn = await asyncpg.connect(pg.dsn)
    await conn.execute("create table t (x int); insert into t values (7)")
    await conn.close()
    pid = postmaster_pid(data_dir)
    os.kill(pid, signal.SIGKILL)  # leaves a stale postmaster.pid and needs crash recovery

    again = await EmbeddedPostgres.start(data_dir)
    assert postmaster_pid(data_dir) != pid
    assert await query(again.dsn, "select x from t") == 7
    await again.stop()


async def test_stale_pid_file_naming_an_unrelated_live_process(data_dir: Path) -> None:
    pg = await EmbeddedPostgres.start(data_dir)
    pid_file = data_dir / "postmaster.pid"
    recorded = pid_file.read_text().splitlines()
    await pg.stop()
    # As after a reboot that handed the old postmaster's PID to some other process of the
    # server's account: pg_ctl alone would call the server running and wait forever.
    owner = os.stat(data_dir)
    other = await asyncio.create_subprocess_exec(
        "sleep", "120", cwd="/", user=owner.st_uid if os.geteuid() == 0 else None
    )
    try:
        pid_file.write_text("\n".join([str(other.pid), *recorded[1:]]) + "\n")
        os.chown(pid_file, owner.st_uid, owner.st_gid)
        began = time.monotonic()
        again = await EmbeddedPostgres.start(data_dir)
        assert time.monotonic() - began < 10
        assert postmaster_pid(data_dir) != other.pid
        assert await query(again.dsn, "select 4") == 4
        await again.stop()
    finally:
        other.kill()
        await other.wait()


async def test_refuses_a_non_empty_directory_that_is_no_cluster(data_dir: Path) -> None:
    await asyncio.to_thread(data_dir.mkdir, parents=True)
    (data_dir / "precious.txt").write_text("not a database")
    with pytest.raises(EmbeddedPostgresError, match="not empty"):
        await EmbeddedPostgres.start(data_dir)
    assert (data_dir / "precious.txt").read_text() == "not a database"
