"""The scheduler actor: filters and weighs hosts (pure, :mod:`cloud.scheduler.filters`), then claims.

A claim is one conditional ``UPDATE`` of the host's usage (``used + request <= capacity * ratio``)
plus a ``cmp_claims`` row, in the handler's transaction: two schedulers racing for the last slot of
a host cannot both win; the loser tries its next host. The instance row is locked first, so a delete
accepted meanwhile (task_state ``deleting``) is never scheduled. A boot into a server group also
takes the group's advisory lock, so two members placed at once both see each other's claim.

A build that failed on its host comes back as ``compute.reschedule_instance``: every host already
tried (``cmp_schedule_attempts``) is excluded, and after ``max_attempts`` hosts the build fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from cloud.runtime.actor import Actor, Context, handles
from cloud.scheduler.filters import (
    DEFAULT_FILTER_NAMES,
    Filter,
    HostState,
    Request,
    choose,
    filters_named,
)
from cloud.scheduler.request import build_request, load_hosts
from cloud.scheduler.weighers import ALL_WEIGHERS, Weigher, weighers_named
from cloud.store.conn import DbConnection
from schemas.compute import InstanceRequested, InstanceScheduled, InstanceScheduleFailed
from schemas.compute_placement import RescheduleInstance

if TYPE_CHECKING:
    from cloud.config import Settings

__all__ = ["HostState", "Request", "Scheduler", "SchedulerConfig", "claim", "load_hosts"]


async def claim(conn: DbConnection, instance_id: str, host: str, req: Request) -> bool:
    """Take ``req``'s resources on ``host`` for the instance; False if they are no longer free."""
    won = await conn.fetchval(
        """UPDATE cmp_hosts SET vcpus_used = vcpus_used + $2, ram_mb_used = ram_mb_used + $3,
                  disk_gb_used = disk_gb_used + $4
           WHERE host = $1 AND enabled AND NOT forced_down
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


@dataclass(frozen=True)
class SchedulerConfig:
    """Enabled filters and weighers (Nova's names), multipliers, and limits."""

    filters: tuple[str, ...] = DEFAULT_FILTER_NAMES
    weighers: tuple[str, ...] = tuple(ALL_WEIGHERS)
    multipliers: dict[str, float] = field(default_factory=dict)
    max_attempts: int = 3
    max_instances_per_host: int = 50
    host_down_after_s: float = 60.0


class Scheduler(Actor):
    """Places requested instances on hosts. Queue: scheduler."""

    name: ClassVar[str] = "scheduler"

    def __init__(
        self, host_down_after_s: float | None = None, config: SchedulerConfig | None = None
    ) -> None:
        self._config = config or SchedulerConfig()
        down_after = host_down_after_s or self._config.host_down_after_s
        self._down_after = timedelta(seconds=down_after)
        # Resolved once: an unknown name fails at start, not at the first boot.
        self._filters: tuple[tuple[str, Filter], ...] = filters_named(self._config.filters)
        self._weighers: tuple[tuple[Weigher, float], ...] = weighers_named(
            self._config.weighers, self._config.multipliers
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Scheduler:
        return cls(
            config=SchedulerConfig(
                filters=tuple(settings.scheduler_filters or DEFAULT_FILTER_NAMES),
                weighers=tuple(settings.scheduler_weighers or ALL_WEIGHERS),
                multipliers=dict(settings.scheduler_weight_multipliers),
                max_attempts=settings.scheduler_max_attempts,
                max_instances_per_host=settings.scheduler_max_instances_per_host,
            )
        )

    @handles(InstanceRequested)
    async def place(self, msg: InstanceRequested, ctx: Context) -> None:
        await self._place(msg.instance_id, ctx)

    @handles(RescheduleInstance)
    async def reschedule(self, msg: RescheduleInstance, ctx: Context) -> None:
        await self._place(msg.instance_id, ctx, last_error=msg.reason)

    async def _place(self, instance_id: str, ctx: Context, last_error: str | None = None) -> None:
        conn = ctx.conn
        row = await conn.fetchrow(
            """SELECT task_state, project_id, image_ref, flavor::text AS flavor,
                      availability_zone, scheduler_hints::text AS hints
               FROM cmp_instances WHERE id = $1 AND deleted_at IS NULL FOR UPDATE""",
            instance_id,
        )
        claimed = await conn.fetchval(
            "SELECT 1 FROM cmp_claims WHERE instance_id = $1", instance_id
        )
        if row is None or row["task_state"] != "scheduling" or claimed:
            state = None if row is None else row["task_state"]
            ctx.log.info("instance.not_scheduled", instance_id=instance_id, task_state=state)
            return
        tried = await conn.fetch(
            """SELECT host, requested_zone, error FROM cmp_schedule_attempts
               WHERE instance_id = $1 ORDER BY attempt""",
            instance_id,
        )
        if len(tried) >= self._config.max_attempts:
            reason = (
                "Exceeded maximum number of retries. Exceeded max scheduling attempts "
                f"{self._config.max_attempts} for instance {instance_id}. Last exception: "
                f"{last_error or tried[-1]['error']}. {_hosts_tried(tried)}"
            )
            await self._failed(ctx, instance_id, reason, 0, {})
            return
        zone = tried[0]["requested_zone"] if tried else row["availability_zone"]
        req = await build_request(
            conn,
            instance_id,
            row,
            zone=zone,
            now=ctx.clock.now(),
            down_after=self._down_after,
            excluded=frozenset(t["host"] for t in tried),
            max_instances_per_host=self._config.max_instances_per_host,
        )
        decision = choose(await load_hosts(conn), req, self._filters, weighers=self._weighers)
        for host in decision.hosts:
            if await claim(conn, instance_id, host, req):
                await conn.execute(
                    """INSERT INTO cmp_schedule_attempts (instance_id, attempt, host, requested_zone)
                       VALUES ($1, $2, $3, $4)""",
                    instance_id,
                    len(tried) + 1,
                    host,
                    zone,
                )
                ctx.log.info("instance.placed", instance_id=instance_id, host=host)
                await ctx.emit(InstanceScheduled(instance_id=instance_id, host=host))
                return
        why = decision.why or "No valid host was found. Every fitting host was claimed meanwhile."
        if tried:
            why = f"{why} {_hosts_tried(tried)}"
        await self._failed(ctx, instance_id, why, decision.considered, decision.eliminated)

    async def _failed(
        self, ctx: Context, instance_id: str, why: str, considered: int, eliminated: dict[str, int]
    ) -> None:
        ctx.log.warning("instance.no_valid_host", instance_id=instance_id, why=why)
        await ctx.emit(
            InstanceScheduleFailed(
                instance_id=instance_id,
                reason=why,
                hosts_considered=considered,
                eliminated=eliminated,
            )
        )


def _hosts_tried(tried: Sequence[Any]) -> str:
    parts = [f"{t['host']} ({t['error']})" if t["error"] else str(t["host"]) for t in tried]
    return "Hosts tried: " + ", ".join(parts) + "."
