"""What every part of the conductor shares: locking an instance row, step deadlines, state writes.

The conductor is one actor assembled from sagas (:mod:`cloud.conductor.actor` and its mixins);
each saga subclasses :class:`ConductorBase` and adds ``@handles`` methods. A step's deadline is a
durable timer keyed ``build:<id>`` (one per instance: the next step's replaces it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from cloud.conductor import states
from cloud.runtime.actor import Actor, Context
from cloud.store.conn import DbConnection
from schemas.compute import CheckBuildDeadline, InstanceErrored

# A step without a configured deadline gets this one.
DEFAULT_STEP_DEADLINE_S = 300.0


def timer_key(instance_id: str) -> str:
    return f"build:{instance_id}"


async def release_claim(conn: DbConnection, instance_id: str) -> str | None:
    """Give the instance's claimed resources back to its host; the host, or None if no claim."""
    row = await conn.fetchrow(
        "DELETE FROM cmp_claims WHERE instance_id = $1 RETURNING host, vcpus, ram_mb, disk_gb",
        instance_id,
    )
    if row is None:
        return None
    await conn.execute(
        """UPDATE cmp_hosts SET vcpus_used = greatest(0, vcpus_used - $2),
                  ram_mb_used = greatest(0, ram_mb_used - $3),
                  disk_gb_used = greatest(0, disk_gb_used - $4)
           WHERE host = $1""",
        row["host"],
        row["vcpus"],
        row["ram_mb"],
        row["disk_gb"],
    )
    return str(row["host"])


class ConductorBase(Actor):
    """Queue: conductor. The shared state and helpers of every conductor saga."""

    name: ClassVar[str] = "conductor"

    def __init__(
        self,
        schedule_deadline_s: float = 60.0,
        spawn_deadline_s: float = 300.0,
        delete_deadline_s: float = 120.0,
        power_deadline_s: float = 120.0,
        step_deadlines: Mapping[str, float] | None = None,
    ) -> None:
        # Seconds per step (a task state); ``step_deadlines`` adds or overrides any step.
        self._deadlines: dict[str, float] = {
            states.SCHEDULING: schedule_deadline_s,
            states.SPAWNING: spawn_deadline_s,
            states.DELETING: delete_deadline_s,
            states.POWERING_OFF: power_deadline_s,
            states.POWERING_ON: power_deadline_s,
            **(step_deadlines or {}),
        }

    def deadline_of(self, step: str) -> float:
        return self._deadlines.get(step, DEFAULT_STEP_DEADLINE_S)

    async def _lock(self, ctx: Context, instance_id: str) -> dict[str, Any] | None:
        row = await ctx.conn.fetchrow(
            """SELECT id, name, vm_state, task_state, host, image_ref, flavor::text AS flavor,
                      user_data, metadata::text AS metadata, project_id
               FROM cmp_instances WHERE id = $1 AND deleted_at IS NULL FOR UPDATE""",
            instance_id,
        )
        return None if row is None else dict(row)

    async def _deadline(self, ctx: Context, instance_id: str, step: str, **details: Any) -> None:
        seconds = self.deadline_of(step)
        await ctx.schedule(
            CheckBuildDeadline(
                instance_id=instance_id, step=step, deadline_s=seconds, details=details
            ),
            key=timer_key(instance_id),
            after=timedelta(seconds=seconds),
        )

    async def _set(self, ctx: Context, instance_id: str, **values: Any) -> None:
        if "vm_state" in values:
            values["status"] = states.status_of(values["vm_state"], values.get("task_state"))
        if "fault" in values:
            values["fault"] = json.dumps(values["fault"])
        names = list(values)
        assigns = ", ".join(
            f"{n} = ${i + 2}{'::jsonb' if n == 'fault' else ''}" for i, n in enumerate(names)
        )
        await ctx.conn.execute(
            f"UPDATE cmp_instances SET {assigns}, updated_at = now() WHERE id = $1",
            instance_id,
            *[values[n] for n in names],
        )

    async def _fail(
        self,
        ctx: Context,
        instance_id: str,
        step: str,
        message: str,
        details: str,
        host: str | None,
    ) -> None:
        now = ctx.clock.now()
        await release_claim(ctx.conn, instance_id)
        await ctx.cancel_timer(timer_key(instance_id))
        await self._set(
            ctx,
            instance_id,
            vm_state=states.ERROR,
            task_state=None,
            fault=states.fault(message, details, now),
        )
        ctx.log.warning("instance.errored", instance_id=instance_id, step=step, reason=message)
        await ctx.emit(
            InstanceErrored(instance_id=instance_id, step=step, reason=message, host=host)
        )
