"""Reads a compute host answers (console output, the VNC console's address): request and reply.

The answer lives on the host and the bus has no RPC, so such a read is a request and a reply that
may fail fast (ARCHITECTURE.md allows request/reply only for such reads):

1. the gateway LISTENs on :data:`REPLY_CHANNEL` (one pooled connection, for the request's
   duration), then sends the request (a command carrying a fresh request id) to ``compute.<host>``;
2. the agent asks its driver and answers with a command to the conductor (commands are not kept
   in the event log: these answers are no history);
3. the conductor stores the answer in ``cmp_console_replies`` (unlogged, swept after a minute) and
   ``NOTIFY cmp_console, '<request id>'`` in the same transaction (:func:`store_reply`);
4. the gateway, woken, takes its row (``DELETE ... RETURNING``) and answers. Without an answer
   within the caller's timeout :func:`ask_host` returns None (the caller answers 409), so a dead
   host never makes the call hang; it also re-checks the table now and then, in case a
   notification was missed.

Any gateway can serve the request and any conductor the reply: they meet in PostgreSQL. A reply
row is ``output`` (text: the console log, or JSON for structured answers) or ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agents.compute.base import address_of
from cloud.store.conn import DbConnection
from cloud.store.db import Store
from schemas.base import Command

REPLY_CHANNEL = "cmp_console"
RECHECK_S = 0.5


async def store_reply(
    conn: DbConnection, request_id: str, instance_id: str, output: str | None, error: str | None
) -> None:
    """Keep a host's answer for the API request waiting on it, and wake that request."""
    await conn.execute(
        "DELETE FROM cmp_console_replies WHERE created_at < now() - interval '1 minute'"
    )
    await conn.execute(
        """INSERT INTO cmp_console_replies (request_id, instance_id, output, error)
           VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING""",
        request_id,
        instance_id,
        output,
        error,
    )
    await conn.execute("SELECT pg_notify($1, $2)", REPLY_CHANNEL, request_id)


async def take_reply(conn: DbConnection, request_id: str) -> Any:
    """The answer to ``request_id`` (a row of ``output``, ``error``), removed; None if none yet."""
    return await conn.fetchrow(
        "DELETE FROM cmp_console_replies WHERE request_id = $1 RETURNING output, error",
        request_id,
    )


async def wait_reply(conn: Any, request_id: str, answered: asyncio.Event, wait_s: float) -> Any:
    """Take the answer once ``answered`` is set (or a re-check finds it); None after ``wait_s``."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wait_s
    while True:
        reply = await take_reply(conn, request_id)
        if reply is not None:
            return reply
        left = until - loop.time()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), min(left, RECHECK_S))


async def ask_host(
    store: Store, host: str, request: Command, request_id: str, timeout_s: float
) -> Any:
    """Send ``request`` (which carries ``request_id``) to ``host``; its answer row, or None."""
    answered = asyncio.Event()

    def notified(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == request_id:
            answered.set()

    async with store.pool.acquire() as conn:
        await conn.add_listener(REPLY_CHANNEL, notified)
        try:
            async with store.unit(source="compute-api") as uow:
                await uow.emit(request, to=address_of(host))
            return await wait_reply(conn, request_id, answered, timeout_s)
        finally:
            await conn.remove_listener(REPLY_CHANNEL, notified)
