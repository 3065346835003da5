"""The conductor actor: drives each instance's build and delete sagas and persists agent reports.

Every step has a deadline, a durable timer (key ``build:<id>``, replaced by the next step's): if
the instance is still in that step when it fires, the instance goes to ERROR with a fault naming the
step, and its claim is released. A delete always completes: without a host it finishes at once,
otherwise the host is told to destroy and the delete is forced if it does not confirm in time.
"""

from __future__ import annotations

import json
from typing import Any

from agents.compute.base import address_of
from cloud.conductor import states
from cloud.conductor.base import release_claim, timer_key
from cloud.conductor.images import ImageSaga
from cloud.conductor.operations import OperationsSaga
from cloud.conductor.reconcile import HostSync
from cloud.runtime.actor import Context, handles
from schemas.compute import (
    CheckBuildDeadline,
    DestroyInstance,
    FlavorSpec,
    InstanceActivated,
    InstanceDeleted,
    InstanceDeleteRequested,
    InstanceDestroyed,
    InstancePowerChanged,
    InstanceRequested,
    InstanceScheduled,
    InstanceScheduleFailed,
    InstanceSpawned,
    InstanceSpawnFailed,
    SpawnInstance,
)
from schemas.compute_placement import RescheduleInstance


class Conductor(OperationsSaga, ImageSaga, HostSync):
    """Queue: conductor. Build, delete and power sagas; the mixins add the others."""

    def __init__(
        self,
        *,
        destroy_orphans: bool = False,
        shelved_offload_time: float = 0,
        **deadlines: Any,
    ) -> None:
        """``deadlines``: :class:`ConductorBase`'s step deadlines; the rest configures the mixins."""
        super().__init__(**deadlines)
        self.destroy_orphans = destroy_orphans
        self.shelved_offload_time = shelved_offload_time

    # -- build -------------------------------------------------------------------------------

    @handles(InstanceRequested)
    async def requested(self, msg: InstanceRequested, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is not None and row["task_state"] == states.SCHEDULING:
            await self._deadline(ctx, msg.instance_id, states.SCHEDULING)

    @handles(InstanceScheduled)
    async def scheduled(self, msg: InstanceScheduled, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] != states.SCHEDULING:
            return  # deleted (the delete released the claim) or a duplicate
        await self._set(ctx, msg.instance_id, host=msg.host, task_state=states.SPAWNING)
        await ctx.conn.execute(  # Nova shows the host's (effective, aggregate) zone
            """UPDATE cmp_instances SET availability_zone = coalesce(availability_zone,
                   cmp_host_zone($2)) WHERE id = $1""",
            msg.instance_id,
            msg.host,
        )
        await ctx.emit(
            SpawnInstance(
                instance_id=msg.instance_id,
                name=row["name"],
                flavor=FlavorSpec.model_validate_json(row["flavor"]),
                image_ref=row["image_ref"],
                user_data=row["user_data"],
                metadata=json.loads(row["metadata"]),
            ),
            to=address_of(msg.host),
        )
        await self._deadline(ctx, msg.instance_id, states.SPAWNING, host=msg.host)

    @handles(InstanceScheduleFailed)
    async def schedule_failed(self, msg: InstanceScheduleFailed, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] != states.SCHEDULING:
            return
        details = json.dumps({"step": "scheduling", "eliminated": msg.eliminated})
        await self._fail(ctx, msg.instance_id, states.SCHEDULING, msg.reason, details, None)

    @handles(InstanceSpawned)
    async def spawned(self, msg: InstanceSpawned, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] != states.SPAWNING or row["host"] != msg.host:
            if row is None or row["task_state"] != states.DELETING:
                # Too late (the build already failed) or gone: the host must not keep it.
                await ctx.emit(
                    DestroyInstance(instance_id=msg.instance_id), to=address_of(msg.host)
                )
            return
        await ctx.cancel_timer(timer_key(msg.instance_id))
        await self._set(
            ctx,
            msg.instance_id,
            vm_state=states.ACTIVE,
            task_state=None,
            power_state=msg.power_state,
            launched_at=ctx.clock.now(),
        )
        ctx.log.info("instance.active", instance_id=msg.instance_id, host=msg.host)
        await ctx.emit(InstanceActivated(instance_id=msg.instance_id, host=msg.host))

    @handles(InstanceSpawnFailed)
    async def spawn_failed(self, msg: InstanceSpawnFailed, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] != states.SPAWNING:
            return
        if await self._reschedule(ctx, msg):
            return
        details = json.dumps({"step": "spawning", "host": msg.host, "error": msg.reason})
        message = f"Build of instance {msg.instance_id} failed on {msg.host}: {msg.reason}"
        await self._fail(ctx, msg.instance_id, states.SPAWNING, message, details, msg.host)

    async def _reschedule(self, ctx: Context, msg: InstanceSpawnFailed) -> bool:
        """Give the failed host's claim back and let the scheduler try another host.

        Only builds the scheduler placed (they have an attempt row); it counts the attempts and
        fails the build, listing the hosts tried, once they run out.
        """
        attempt = await ctx.conn.fetchrow(
            """UPDATE cmp_schedule_attempts SET error = $3
               WHERE instance_id = $1 AND host = $2 AND error IS NULL
               RETURNING requested_zone""",
            msg.instance_id,
            msg.host,
            msg.reason,
        )
        if attempt is None:
            return False
        await release_claim(ctx.conn, msg.instance_id)
        # The zone shown is the host's; the next placement must honour only the one asked for.
        await self._set(
            ctx,
            msg.instance_id,
            host=None,
            task_state=states.SCHEDULING,
            availability_zone=attempt["requested_zone"],
        )
        ctx.log.warning(
            "instance.rescheduled", instance_id=msg.instance_id, host=msg.host, error=msg.reason
        )
        await ctx.emit(
            RescheduleInstance(instance_id=msg.instance_id, failed_host=msg.host, reason=msg.reason)
        )
        await self._deadline(ctx, msg.instance_id, states.SCHEDULING)
        return True

    @handles(CheckBuildDeadline)
    async def deadline(self, msg: CheckBuildDeadline, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] != msg.step:
            return  # the step finished in time
        if msg.step == states.DELETING:
            await self._finish_delete(ctx, msg.instance_id, row["host"], forced=True)
            return
        if msg.step in states.OPERATION_STEPS:  # an operation on an existing instance
            await self.operation_timed_out(ctx, msg, row)
            return
        if msg.step in states.REVERTIBLE:
            ctx.log.warning("instance.task_timed_out", instance_id=msg.instance_id, step=msg.step)
            await self._set(ctx, msg.instance_id, task_state=None)
            return
        host = row["host"]
        message = (
            f"Build of instance {msg.instance_id} timed out in step {msg.step}: "
            f"no outcome within {msg.deadline_s:g}s"
        )
        details = json.dumps({"step": msg.step, "host": host, "deadline_s": msg.deadline_s})
        await self._fail(ctx, msg.instance_id, msg.step, message, details, host)
        if host is not None:  # the host may still finish it later: make sure it does not keep it
            await ctx.emit(DestroyInstance(instance_id=msg.instance_id), to=address_of(host))

    # -- power -------------------------------------------------------------------------------

    @handles(InstancePowerChanged)
    async def power_changed(self, msg: InstancePowerChanged, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] not in states.REVERTIBLE:
            return
        await ctx.cancel_timer(timer_key(msg.instance_id))
        values: dict[str, Any] = {"task_state": None, "power_state": msg.power_state}
        if msg.power_state == 1:
            values["vm_state"] = states.ACTIVE
        elif msg.power_state == 4:
            values["vm_state"] = states.STOPPED
        if msg.error:
            ctx.log.warning("instance.power_failed", instance_id=msg.instance_id, error=msg.error)
        await self._set(ctx, msg.instance_id, **values)

    # -- delete ------------------------------------------------------------------------------

    @handles(InstanceDeleteRequested)
    async def delete_requested(self, msg: InstanceDeleteRequested, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None:
            return
        host = row["host"] or await ctx.conn.fetchval(
            "SELECT host FROM cmp_claims WHERE instance_id = $1", msg.instance_id
        )
        if host is None:
            await self._finish_delete(ctx, msg.instance_id, None, forced=False)
            return
        await ctx.emit(DestroyInstance(instance_id=msg.instance_id), to=address_of(host))
        await self._deadline(ctx, msg.instance_id, states.DELETING, host=host)

    @handles(InstanceDestroyed)
    async def destroyed(self, msg: InstanceDestroyed, ctx: Context) -> None:
        row = await self._lock(ctx, msg.instance_id)
        if row is None or row["task_state"] != states.DELETING:
            return  # a cleanup destroy after a failed build: nothing to record
        await self._finish_delete(ctx, msg.instance_id, msg.host, forced=False)

    async def _finish_delete(
        self, ctx: Context, instance_id: str, host: str | None, *, forced: bool
    ) -> None:
        now = ctx.clock.now()
        await release_claim(ctx.conn, instance_id)
        await ctx.cancel_timer(timer_key(instance_id))
        await ctx.conn.execute(
            """UPDATE cmp_instances SET vm_state = 'deleted', task_state = NULL, status = 'DELETED',
                      power_state = 0, terminated_at = $2, deleted_at = $2, updated_at = $2
               WHERE id = $1""",
            instance_id,
            now,
        )
        ctx.log.info("instance.deleted", instance_id=instance_id, host=host, forced=forced)
        await ctx.emit(InstanceDeleted(instance_id=instance_id, host=host, forced=forced))
