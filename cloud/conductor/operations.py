"""The saga of an operation on an existing instance (stop, start, reboot, pause, resize, ...).

The API locked the row, set the operation's task state, sent ``compute.operate_instance`` to the
host and armed the step's deadline (timer ``build:<id>``). Here the host's
``compute.instance.operation_finished`` is recorded: vm_state/task_state/power_state, the resize's
claims, the action event's outcome. An outcome that finds the instance no longer in that task state
came too late (its deadline already settled it) and is ignored; a late successful resize is undone.

A missed deadline never leaves an instance stuck: the task state is cleared, the vm_state stays
what it was (Nova reverts task states the same way), a resize gives its move claim back, a confirm
completes anyway (the old copy is the agent's reconciliation's to clean up), and the action's event
is recorded as an error.
"""

from __future__ import annotations

import json
from typing import Any

from agents.compute.base import address_of
from cloud.compute import action_log
from cloud.conductor import states
from cloud.conductor.base import ConductorBase, timer_key
from cloud.runtime.actor import Context, handles
from schemas.compute import CheckBuildDeadline, DestroyInstance, FlavorSpec, InstanceErrored
from schemas.compute_ops import InstanceOperationFinished, OperateInstance


async def release_move_claim(ctx: Context, instance_id: str) -> dict[str, Any] | None:
    """Give a resize's claim on its destination back; the move claim's row, or None."""
    row = await ctx.conn.fetchrow(
        """DELETE FROM cmp_move_claims WHERE instance_id = $1
           RETURNING source_host, dest_host, vcpus, ram_mb, disk_gb,
                     old_flavor::text AS old_flavor, new_flavor::text AS new_flavor""",
        instance_id,
    )
    if row is None:
        return None
    await ctx.conn.execute(
        """UPDATE cmp_hosts SET vcpus_used = greatest(0, vcpus_used - $2),
                  ram_mb_used = greatest(0, ram_mb_used - $3),
                  disk_gb_used = greatest(0, disk_gb_used - $4)
           WHERE host = $1""",
        row["dest_host"],
        row["vcpus"],
        row["ram_mb"],
        row["disk_gb"],
    )
    return dict(row)


async def confirm_move(ctx: Context, instance_id: str) -> None:
    """The move claim becomes the instance's claim; the old one goes back to its host."""
    moved = await ctx.conn.fetchrow(
        "DELETE FROM cmp_move_claims WHERE instance_id = $1 RETURNING *", instance_id
    )
    if moved is None:
        return
    old = await ctx.conn.fetchrow(
        "SELECT host, vcpus, ram_mb, disk_gb FROM cmp_claims WHERE instance_id = $1 FOR UPDATE",
        instance_id,
    )
    if old is not None:
        await ctx.conn.execute(
            """UPDATE cmp_hosts SET vcpus_used = greatest(0, vcpus_used - $2),
                      ram_mb_used = greatest(0, ram_mb_used - $3),
                      disk_gb_used = greatest(0, disk_gb_used - $4)
               WHERE host = $1""",
            old["host"],
            old["vcpus"],
            old["ram_mb"],
            old["disk_gb"],
        )
    await ctx.conn.execute(
        """INSERT INTO cmp_claims (instance_id, host, vcpus, ram_mb, disk_gb)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (instance_id) DO UPDATE SET host = excluded.host, vcpus = excluded.vcpus,
               ram_mb = excluded.ram_mb, disk_gb = excluded.disk_gb""",
        instance_id,
        moved["dest_host"],
        moved["vcpus"],
        moved["ram_mb"],
        moved["disk_gb"],
    )


class OperationsSaga(ConductorBase):
    """Mixin of :class:`cloud.conductor.actor.Conductor`."""

    async def _lock_operated(self, ctx: Context, instance_id: str) -> dict[str, Any] | None:
        row = await ctx.conn.fetchrow(
            """SELECT id, vm_state, task_state, power_state, host, flavor::text AS flavor
               FROM cmp_instances WHERE id = $1 AND deleted_at IS NULL FOR UPDATE""",
            instance_id,
        )
        return None if row is None else dict(row)

    @handles(InstanceOperationFinished)
    async def operation_finished(self, msg: InstanceOperationFinished, ctx: Context) -> None:
        kind = states.OPERATIONS[msg.operation]
        row = await self._lock_operated(ctx, msg.instance_id)
        if row is None or row["task_state"] != kind.task_state:
            ctx.log.info(
                "instance.operation_outcome_ignored",
                instance_id=msg.instance_id,
                operation=msg.operation,
                task_state=None if row is None else row["task_state"],
            )
            if row is not None and msg.operation == "resize" and msg.error is None:
                await self._undo_late_resize(ctx, row, msg.host)
            return
        await ctx.cancel_timer(timer_key(msg.instance_id))
        await action_log.event_finished(
            ctx, msg.instance_id, kind.event, host=msg.host, error=msg.error
        )
        if msg.operation == "resize":
            await self._resized(ctx, row, msg)
        elif msg.operation == "confirm_resize":
            await confirm_move(ctx, msg.instance_id)  # an error here is the old copy's cleanup
            power = msg.power_state if msg.host == row["host"] else row["power_state"]
            await self._settle(ctx, msg.instance_id, power, None, states.ACTIVE)
        elif msg.operation == "revert_resize":
            await self._reverted(ctx, row, msg)
        elif msg.operation == "rebuild" and msg.error is not None:
            await self._rebuild_failed(ctx, msg)
        else:
            done = kind.done if msg.error is None else None
            await self._settle(ctx, msg.instance_id, msg.power_state, done, row["vm_state"])
        ctx.log.info(
            "instance.operation_done",
            instance_id=msg.instance_id,
            operation=msg.operation,
            error=msg.error,
        )

    async def _settle(
        self, ctx: Context, instance_id: str, power: int, done: str | None, current: str
    ) -> None:
        """Clear the task state; the vm_state is ``done`` or what the power state implies."""
        vm_state = done or states.vm_state_of_power(power, current)
        await self._set(ctx, instance_id, vm_state=vm_state, task_state=None, power_state=power)

    async def _resized(
        self, ctx: Context, row: dict[str, Any], msg: InstanceOperationFinished
    ) -> None:
        if msg.error is not None:
            await release_move_claim(ctx, msg.instance_id)
            await self._settle(ctx, msg.instance_id, msg.power_state, None, row["vm_state"])
            return
        moved = await ctx.conn.fetchrow(
            "SELECT dest_host, new_flavor::text AS new_flavor FROM cmp_move_claims"
            " WHERE instance_id = $1",
            msg.instance_id,
        )
        if moved is not None:  # the instance now runs the new flavor on its new host
            flavor = FlavorSpec.model_validate_json(moved["new_flavor"])
            await ctx.conn.execute(
                """UPDATE cmp_instances SET flavor = $2::jsonb, flavor_id = $3, host = $4
                   WHERE id = $1""",
                msg.instance_id,
                flavor.model_dump_json(),
                flavor.id,
                moved["dest_host"],
            )
        await self._set(
            ctx,
            msg.instance_id,
            vm_state=states.RESIZED,
            task_state=None,
            power_state=msg.power_state,
        )

    async def _reverted(
        self, ctx: Context, row: dict[str, Any], msg: InstanceOperationFinished
    ) -> None:
        if msg.error is not None:  # still resized: the user may retry, or confirm
            await self._set(ctx, msg.instance_id, vm_state=row["vm_state"], task_state=None)
            return
        moved = await release_move_claim(ctx, msg.instance_id)
        if moved is not None:
            flavor = FlavorSpec.model_validate_json(moved["old_flavor"])
            await ctx.conn.execute(
                """UPDATE cmp_instances SET flavor = $2::jsonb, flavor_id = $3, host = $4
                   WHERE id = $1""",
                msg.instance_id,
                flavor.model_dump_json(),
                flavor.id,
                moved["source_host"],
            )
            if moved["dest_host"] != moved["source_host"]:  # the new copy must not stay behind
                await ctx.emit(
                    DestroyInstance(instance_id=msg.instance_id),
                    to=address_of(moved["dest_host"]),
                )
        await self._settle(ctx, msg.instance_id, msg.power_state, None, states.ACTIVE)

    async def _rebuild_failed(self, ctx: Context, msg: InstanceOperationFinished) -> None:
        """A failed rebuild leaves no usable disk: ERROR with a fault (the claim stays, as Nova)."""
        message = f"Rebuild of instance {msg.instance_id} failed on {msg.host}: {msg.error}"
        details = json.dumps({"step": states.REBUILDING, "host": msg.host, "error": msg.error})
        await self._set(
            ctx,
            msg.instance_id,
            vm_state=states.ERROR,
            task_state=None,
            power_state=msg.power_state,
            fault=states.fault(message, details, ctx.clock.now()),
        )
        await ctx.emit(
            InstanceErrored(
                instance_id=msg.instance_id, step=states.REBUILDING, reason=message, host=msg.host
            )
        )

    async def _undo_late_resize(self, ctx: Context, row: dict[str, Any], host: str) -> None:
        """A resize finished after its deadline gave it up: put the host back to the old flavor."""
        if row["vm_state"] == states.RESIZED or row["task_state"] is not None:
            return  # resized after all, or busy with something else (a delete, a new resize)
        await ctx.emit(
            OperateInstance(
                instance_id=row["id"],
                operation="revert_resize",
                flavor=FlavorSpec.model_validate_json(row["flavor"]),
            ),
            to=address_of(host),
        )

    async def operation_timed_out(
        self, ctx: Context, msg: CheckBuildDeadline, row: dict[str, Any]
    ) -> None:
        """The host did not report the step in time: settle the instance without it."""
        kind = states.OPERATION_STEPS[msg.step]
        instance_id = msg.instance_id
        error = (
            f"{kind.action} of instance {instance_id} timed out in step {msg.step}: "
            f"no outcome within {msg.deadline_s:g}s"
        )
        ctx.log.warning("instance.task_timed_out", instance_id=instance_id, step=msg.step)
        await action_log.event_finished(
            ctx,
            instance_id,
            kind.event,
            host=row["host"],
            error=error,
            details=json.dumps({"step": msg.step, "deadline_s": msg.deadline_s}),
        )
        if kind.operation == "resize":
            await release_move_claim(ctx, instance_id)
        elif kind.operation == "confirm_resize":
            await confirm_move(ctx, instance_id)
            current = await self._lock_operated(ctx, instance_id)
            power = current["power_state"] if current is not None else 0
            await self._settle(ctx, instance_id, power, None, states.ACTIVE)
            return
        # The status follows the vm_state again (REBOOT, RESIZE, ... end with the task state).
        await self._set(ctx, instance_id, vm_state=row["vm_state"], task_state=None)
