"""The scheduler actor: filters and weighs hosts (pure, :mod:`cloud.scheduler.filters`), then claims.

A claim is one conditional ``UPDATE`` of the host's usage (``used + request <= capacity * ratio``)
plus a ``cmp_claims`` row, in the handler's transaction: two schedulers racing for the last slot of
a host cannot both win; the loser tries its next host. The instance row is locked first, so a delete
accepted meanwhile (task_state ``deleting``) is never scheduled.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from cloud.runtime.actor import Actor, Context, handles
from cloud.scheduler.filters import HostState, Request, choose
from cloud.store.conn import DbConnection
from schemas.compute import InstanceRequested, InstanceScheduled, InstanceScheduleFailed


async def load_hosts(conn: DbConnection) -> list[HostState]:
    rows = await conn.fetch(
        """SELECT host, vcpus, ram_mb, disk_gb, vcpus_used, ram_mb_used, disk_gb_used, cpu_ratio,
                  ram_ratio, disk_ratio, enabled, last_report_at, availability_zone
           FROM cmp_hosts ORDER BY host"""
    )
    return [HostState(**dict(row)) for row in rows]


async def claim(conn: DbConnection, instance_id: str, host: str, req: Request) -> bool:
    """Take ``req``'s resources on ``host`` for the instance; False if they are no longer free."""
    won = await conn.fetchval(
        """UPDATE cmp_hosts SET vcpus_used = vcpus_used + $2, ram_mb_used = ram_mb_used + $3,
                  disk_gb_used = disk_gb_used + $4
           WHERE host = $1 AND enabled
             AND vcpus_used + $2 <= vcpus * cpu_ratio
             AND ram_mb_used + $3 <= ram_mb * ram_ratio
             AND disk_gb_used + $4 <= disk_gb * disk_ratio
           RETURNING host""",
        host,
        req.vcpus,
        req.ram_mb,
        req.disk_gb,
    )
    if won is None:
        return False
    await conn.execute(
        """INSERT INTO cmp_claims (instance_id, host, vcpus, ram_mb, disk_gb)
           VALUES ($1, $2, $3, $4, $5)""",
        instance_id,
        host,
        req.vcpus,
        req.ram_mb,
        req.disk_gb,
    )
    return True


class Scheduler(Actor):
    """Places requested instances on hosts. Queue: scheduler."""

    name: ClassVar[str] = "scheduler"

    def __init__(self, host_down_after_s: float = 60.0) -> None:
        self._down_after = timedelta(seconds=host_down_after_s)

    @handles(InstanceRequested)
    async def place(self, msg: InstanceRequested, ctx: Context) -> None:
        conn = ctx.conn
        state = await conn.fetchval(
            "SELECT task_state FROM cmp_instances WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
            msg.instance_id,
        )
        claimed = await conn.fetchval(
            "SELECT 1 FROM cmp_claims WHERE instance_id = $1", msg.instance_id
        )
        if state != "scheduling" or claimed:
            ctx.log.info("instance.not_scheduled", instance_id=msg.instance_id, task_state=state)
            return
        flavor = msg.flavor
        req = Request(
            vcpus=flavor.vcpus,
            ram_mb=flavor.ram_mb + flavor.swap_mb,
            disk_gb=flavor.disk_gb + flavor.ephemeral_gb,
            now=ctx.clock.now(),
            availability_zone=msg.availability_zone,
            down_after=self._down_after,
        )
        decision = choose(await load_hosts(conn), req)
        for host in decision.hosts:
            if await claim(conn, msg.instance_id, host, req):
                ctx.log.info("instance.placed", instance_id=msg.instance_id, host=host)
                await ctx.emit(InstanceScheduled(instance_id=msg.instance_id, host=host))
                return
        why = decision.why or "No valid host was found. Every fitting host was claimed meanwhile."
        ctx.log.warning("instance.no_valid_host", instance_id=msg.instance_id, why=why)
        await ctx.emit(
            InstanceScheduleFailed(
                instance_id=msg.instance_id,
                reason=why,
                hosts_considered=decision.considered,
                eliminated=decision.eliminated,
            )
        )
