"""The outbox relay: publishes committed outbox rows with confirms, then deletes them.

Rows are split into partitions (by stream for events, by address for commands). A relay owns a
partition while it holds a session advisory lock on it, so several relays (in several processes)
share the work and each partition is published by one relay, in ``seq`` order. A relay that dies
loses its locks with its connection; another takes the partitions over on its next pass.

At-least-once: a relay that dies after the broker confirmed but before the delete publishes the same
rows again. Message ids are unchanged, so every consumer's inbox drops the copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import aiormq
import asyncpg
import structlog

from cloud.runtime.backoff import Backoff
from cloud.runtime.bus import Bus, RawMessage
from cloud.store.conn import DbConnection
from cloud.store.writes import OUTBOX_CHANNEL

log = structlog.get_logger("aiostack.store.relay")

PARTITION_LOCK_SPACE = 0x0A10_5700
FaultHook = Callable[[str], Awaitable[None]]


async def _no_fault(point: str) -> None:
    return None


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        *,
        partitions: int,
        batch: int = 500,
        poll_s: float = 1.0,
        fault: FaultHook = _no_fault,
    ) -> None:
        self._pool, self._bus = pool, bus
        self._partitions, self._batch, self._poll_s = partitions, batch, poll_s
        self._fault = fault
        self._wakeup = asyncio.Event()
        self._held: list[int] = []
        self._stopping = False
        self.published = 0

    def nudge(self) -> None:
        """Something was committed to the outbox: look now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until ``stop()``, then drain the held partitions and return.

        Holds one pooled connection for its partition locks and LISTEN; releasing it resets the
        session, which drops the locks.
        """
        conn = await self._pool.acquire()
        backoff = Backoff()
        try:
            await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
            while True:
                await self._claim_partitions(conn)
                try:
                    sent = await self.pass_once(conn) if self._held else 0
                except (ConnectionError, aiormq.exceptions.AMQPError) as exc:
                    log.warning("relay.publish_failed", error=repr(exc))
                    await asyncio.sleep(backoff.next())
                    continue
                backoff.reset()
                if self._stopping and sent == 0:
                    return
                if sent < self._batch and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
                    self._wakeup.clear()
        finally:
            self._held = []
            with contextlib.suppress(Exception):
                await conn.remove_listener(OUTBOX_CHANNEL, self._on_notify)
            await self._pool.release(conn)

    def stop(self) -> None:
        """Finish: send what is left in the held partitions, then let ``run()`` return."""
        self._stopping = True
        self._wakeup.set()

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _claim_partitions(self, conn: DbConnection) -> None:
        if len(self._held) == self._partitions:
            return
        rows = await conn.fetch(
            """SELECT p FROM generate_series(0, $2 - 1) AS p
               WHERE NOT (p = ANY($3::int[])) AND pg_try_advisory_lock($1, p)""",
            PARTITION_LOCK_SPACE,
            self._partitions,
            self._held,
        )
        if rows:
            self._held = sorted(self._held + [r["p"] for r in rows])
            log.info("relay.partitions_claimed", partitions=self._held)

    async def pass_once(self, conn: DbConnection) -> int:
        """Publish one batch from the held partitions; return how many rows were sent."""
        rows = await conn.fetch(
            """SELECT seq, exchange, routing_key, headers::text AS headers, body FROM outbox
               WHERE partition = ANY($1::int[]) ORDER BY seq LIMIT $2""",
            self._held,
            self._batch,
        )
        if not rows:
            return 0
        messages = [
            RawMessage(r["exchange"], r["routing_key"], r["body"], _headers(r["headers"]))
            for r in rows
        ]
        await self._bus.publish(messages)
        await self._fault("relay.after_publish")
        await conn.execute(
            "DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows]
        )
        self.published += len(rows)
        return len(rows)


def _headers(text: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(text)
    return loaded
