"""A fresh, migrated PostgreSQL database for one benchmark run, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from cloud.store import migrations

# Tables the runtime writes; emptied between paths so each starts from the same state.
RUNTIME_TABLES = ("events", "streams", "outbox", "inbox", "timers")


def dsn_for(admin_dsn: str, database: str) -> str:
    """``admin_dsn`` with its database name replaced (query parameters are kept)."""
    base, _, tail = admin_dsn.partition("?")
    head, _, _ = base.rstrip("/").rpartition("/")
    return f"{head}/{database}" + (f"?{tail}" if tail else "")


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """CREATE DATABASE bench_<random>, apply the migrations, yield its DSN, DROP ... WITH (FORCE)."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            dsn = dsn_for(admin_dsn, name)
            conn = await asyncpg.connect(dsn)
            try:
                await migrations.upgrade(conn)
            finally:
                await conn.close()
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def reset_runtime_tables(pool: asyncpg.Pool) -> None:
    """Empty the runtime's tables and refresh planner statistics."""
    await pool.execute(f"TRUNCATE {', '.join(RUNTIME_TABLES)}")
    await pool.execute(f"ANALYZE {', '.join(RUNTIME_TABLES)}")
