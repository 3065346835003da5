"""The PostgreSQL store: a pool, migrations on open, and units of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from cloud.runtime.clock import Clock, SystemClock
from cloud.store import migrations
from cloud.store.writes import PendingWrites, UnitOfWork
from schemas import Envelope


class Store:
    """Owns the asyncpg pool. ``unit()`` is the only way state changes are written."""

    def __init__(
        self, pool: asyncpg.Pool, *, partitions: int = 8, clock: Clock | None = None
    ) -> None:
        self.pool, self.partitions = pool, partitions
        self.dsn: str | None = None  # set by open(); lets components open their own connections
        self.clock: Clock = clock or SystemClock()
        self._commit_listeners: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        partitions: int = 8,
        clock: Clock | None = None,
        max_size: int = 10,
        migrate: bool = True,
    ) -> Store:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
        if migrate:
            async with pool.acquire() as conn:
                await migrations.upgrade(conn)
        store = cls(pool, partitions=partitions, clock=clock)
        store.dsn = dsn
        return store

    async def close(self) -> None:
        await self.pool.close()

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every unit that commits (the local relay uses it to wake up)."""
        self._commit_listeners.append(listener)

    def committed(self) -> None:
        for listener in self._commit_listeners:
            listener()

    @asynccontextmanager
    async def unit(
        self, *, source: str, cause: Envelope | None = None
    ) -> AsyncIterator[UnitOfWork]:
        """One transaction: rows you write on ``uow.conn`` plus events, outbox and timers."""
        async with self.pool.acquire() as conn, conn.transaction():
            pending = PendingWrites(self.partitions)
            uow = UnitOfWork(conn, pending, source=source, clock=self.clock, cause=cause)
            yield uow
            await pending.flush(conn)
        self.committed()
