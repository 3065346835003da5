"""Durable timers: due rows move from ``timers`` into the outbox in one statement.

Several timer services may run at once (``SKIP LOCKED``); each due timer is moved exactly once, and
from the outbox on it is an ordinary message. The clock is injected, so tests decide what is due.
"""

from __future__ import annotations

import asyncio

import structlog

from cloud.store.db import Store
from cloud.store.writes import OUTBOX_CHANNEL

log = structlog.get_logger("aiostack.store.timers")

_MOVE_DUE = """
WITH due AS (
    DELETE FROM timers WHERE key IN (
        SELECT key FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING due_at, partition, exchange, routing_key, headers, body
), moved AS (
    INSERT INTO outbox (partition, exchange, routing_key, headers, body)
    SELECT partition, exchange, routing_key, headers, body FROM due ORDER BY due_at
    RETURNING 1
)
SELECT count(*) FROM moved
"""


class TimerService:
    def __init__(self, store: Store, *, poll_s: float = 0.5, batch: int = 500) -> None:
        self._store, self._poll_s, self._batch = store, poll_s, batch

    async def fire_due(self) -> int:
        """Move every timer due by the clock's now into the outbox; return how many."""
        total = 0
        while True:
            fired: int = await self._store.pool.fetchval(
                _MOVE_DUE, self._store.clock.now(), self._batch
            )
            total += fired
            if fired < self._batch:
                break
        if total:
            log.info("timers.fired", count=total)
            # Wake relays here and in other processes: the rows are in the outbox now.
            await self._store.pool.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
            self._store.committed()
        return total

    async def run(self) -> None:
        while True:
            await self.fire_due()
            await asyncio.sleep(self._poll_s)
