"""The service registry: who is running where, and who stopped answering.

Every running actor publishes ``ServiceHeartbeat``; this actor records the last one per
(host, binary) and, on each tick, marks down the services silent for longer than the window.
Transitions are events (``service.marked_up`` / ``service.marked_down``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import ClassVar

from cloud.runtime.actor import Actor, Context, handles
from schemas.system import ServiceHeartbeat, ServiceMarkedDown, ServiceMarkedUp


def service_id(host: str, binary: str) -> str:
    return f"{host}/{binary}"


class ServiceRegistry(Actor):
    """Queue: registry."""

    name: ClassVar[str] = "registry"
    tick_interval: ClassVar[float] = 1.0

    def __init__(self, down_after_s: float = 15.0) -> None:
        self._down_after = timedelta(seconds=down_after_s)

    @handles(ServiceHeartbeat)
    async def seen(self, msg: ServiceHeartbeat, ctx: Context) -> None:
        sid = service_id(msg.host, msg.binary)
        was = await ctx.conn.fetchval(
            "SELECT state FROM services WHERE service_id = $1 FOR UPDATE", sid
        )
        await ctx.conn.execute(
            """INSERT INTO services (service_id, host, binary_name, version, started_at,
                                     last_seen_at, readiness, state)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, 'up')
               ON CONFLICT (service_id) DO UPDATE SET version = excluded.version,
                   started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,
                   readiness = excluded.readiness, state = 'up'""",
            sid,
            msg.host,
            msg.binary,
            msg.version,
            msg.started_at,
            ctx.clock.now(),
            json.dumps(msg.readiness),
        )
        if was != "up":
            ctx.log.info("service.up", service_id=sid)
            await ctx.emit(
                ServiceMarkedUp(
                    service_id=sid,
                    host=msg.host,
                    binary=msg.binary,
                    version=msg.version,
                    started_at=msg.started_at,
                )
            )

    async def tick(self, ctx: Context) -> None:
        rows = await ctx.conn.fetch(
            """UPDATE services SET state = 'down'
               WHERE state = 'up' AND last_seen_at < $1
               RETURNING service_id, host, binary_name, last_seen_at""",
            ctx.clock.now() - self._down_after,
        )
        for row in rows:
            ctx.log.warning("service.down", service_id=row["service_id"])
            await ctx.emit(
                ServiceMarkedDown(
                    service_id=row["service_id"],
                    host=row["host"],
                    binary=row["binary_name"],
                    last_seen_at=row["last_seen_at"],
                    window_s=self._down_after.total_seconds(),
                )
            )
