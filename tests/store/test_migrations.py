"""Migrations: forward-only, idempotent, checksummed, serialised by an advisory lock."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from cloud.store import migrations
from tests.conftest import PG_URL


@pytest.fixture
async def empty_db() -> asyncpg.Connection:
    import uuid

    name = f"aiostack_m_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rpartition("/")[0]
    conn = await asyncpg.connect(f"{base}/{name}")
    yield conn
    await conn.close()
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_second_run_is_a_no_op(empty_db: asyncpg.Connection) -> None:
    every = [f"{m.version:04d}_{m.name}" for m in migrations.discover()]
    assert every[0] == "0001_runtime"
    assert await migrations.upgrade(empty_db) == every
    assert await migrations.upgrade(empty_db) == []
    assert await empty_db.fetchval("SELECT count(*) FROM schema_migrations") == len(every)


async def test_concurrent_runs_apply_once(empty_db: asyncpg.Connection) -> None:
    dsn = f"{PG_URL.rpartition('/')[0]}/{await empty_db.fetchval('SELECT current_database()')}"
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrations.upgrade(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(len(r) for r in results) == [0, 0, len(migrations.discover())]


async def test_edited_applied_migration_is_refused(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    shutil.copytree(migrations.MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    await migrations.upgrade(empty_db, tmp_path)
    edited = tmp_path / "0001_runtime.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    with pytest.raises(migrations.MigrationError, match="0001_runtime was edited after it"):
        await migrations.upgrade(empty_db, tmp_path)


async def test_new_migration_is_applied_in_order(
    empty_db: asyncpg.Connection, tmp_path: Path
) -> None:
    shutil.copytree(migrations.MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    await migrations.upgrade(empty_db, tmp_path)
    following = f"{len(migrations.discover()) + 1:04d}_extra"
    (tmp_path / f"{following}.sql").write_text("CREATE TABLE extra (id int);")
    assert await migrations.upgrade(empty_db, tmp_path) == [following]


def test_gaps_and_bad_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(migrations.MigrationError, match="without gaps"):
        migrations.discover(tmp_path)
    (tmp_path / "2_bad.sql").write_text("")
    with pytest.raises(migrations.MigrationError, match=r"NNNN_name\.sql"):
        migrations.discover(tmp_path)


async def test_events_are_append_only(empty_db: asyncpg.Connection) -> None:
    await migrations.upgrade(empty_db)
    await empty_db.execute(
        """INSERT INTO events (id, stream_id, stream_version, kind, v, body, correlation_id,
                               occurred_at, source)
           VALUES ('e1', 's', 1, 'a.b', 1, '{}', 'c', now(), 'test')"""
    )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await empty_db.execute("UPDATE events SET kind = 'x.y'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await empty_db.execute("DELETE FROM events")
