"""Host synchronisation: what the hosts report against what the database says.

Every report registers the host (capacity, zone, last report) and, for a ``HostStateReported``,
reconciles the host's instances as Nova's ``_sync_instance_power_state`` does:

- an instance with a task in progress, or whose row changed after the report was taken, is skipped
  (the report may predate the last transition);
- a differing power state is recorded; an ACTIVE instance found shut down, crashed or suspended
  becomes SHUTOFF (``stopped``), a PAUSED one found shut down too; a STOPPED one found running is
  stopped again (``powering-off`` plus a stop command, as Nova's force-stop);
- an instance the database places on the host but the hypervisor does not have gets power state
  NOSTATE and keeps its vm_state (Nova: "Instance is unexpectedly not found. Ignore.");
- an instance the hypervisor runs that the database does not know, has deleted, or places elsewhere
  is an orphan: logged and recorded (once per conductor process), and destroyed only when
  ``destroy_orphans`` is set.

Updates are conditional on the row still being as read (no row locks across a host's instances, so
reports never deadlock with the build saga).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from agents.compute.base import address_of
from cloud.conductor import states
from cloud.conductor.base import ConductorBase
from cloud.runtime.actor import Context, handles
from schemas.compute import DestroyInstance, HostResourcesReported, StopInstance
from schemas.compute_hosts import (
    HostInstanceOrphaned,
    HostsStateReported,
    HostState,
    HostStateReported,
    InstancePowerSynced,
)

NOSTATE, RUNNING, PAUSED, SHUTDOWN, CRASHED, SUSPENDED = 0, 1, 3, 4, 6, 7
# vm_states whose power state is recorded but never acted on (Nova ignores these too).
_IGNORED = {
    states.BUILDING,
    states.ERROR,
    states.SUSPENDED,
    states.RESCUED,
    states.RESIZED,
    states.SHELVED_OFFLOADED,
}


def sync_decision(vm_state: str, power_state: int) -> tuple[str | None, bool]:
    """(new vm_state or None, whether to stop the guest) for a reported power state. Pure."""
    if vm_state in _IGNORED:
        return None, False
    if vm_state == states.ACTIVE and power_state in (SHUTDOWN, CRASHED, SUSPENDED):
        return states.STOPPED, False  # "Instance shutdown by itself. Calling the stop API."
    if vm_state == states.PAUSED and power_state in (SHUTDOWN, CRASHED):
        return states.STOPPED, False
    if vm_state == states.STOPPED and power_state not in (NOSTATE, SHUTDOWN, CRASHED):
        return None, True  # "Instance is not stopped. Calling the stop API."
    return None, False


class HostSync(ConductorBase):
    """Mixin of :class:`cloud.conductor.actor.Conductor`."""

    destroy_orphans: bool = False

    @handles(HostResourcesReported)
    async def host_reported(self, msg: HostResourcesReported, ctx: Context) -> None:
        """An agent of the first release: capacity only, no power states to reconcile."""
        state = HostState(
            host=msg.host,
            hypervisor_type=msg.hypervisor_type,
            vcpus=msg.vcpus,
            ram_mb=msg.ram_mb,
            disk_gb=msg.disk_gb,
            availability_zone=msg.availability_zone,
            taken_at=ctx.clock.now(),
        )
        await self._register_hosts(ctx, [state])

    @handles(HostStateReported)
    async def host_state_reported(self, msg: HostStateReported, ctx: Context) -> None:
        state = HostState.model_validate(msg.model_dump(exclude={"kind", "v"}))
        await self._hosts_reported(ctx, [state])

    @handles(HostsStateReported)
    async def hosts_state_reported(self, msg: HostsStateReported, ctx: Context) -> None:
        await self._hosts_reported(ctx, msg.hosts)

    async def _hosts_reported(self, ctx: Context, hosts: Sequence[HostState]) -> None:
        if not hosts:
            return
        await self._register_hosts(ctx, hosts)
        rows = await ctx.conn.fetch(
            """SELECT id, host, vm_state, task_state, power_state, updated_at FROM cmp_instances
               WHERE host = ANY($1::text[]) AND deleted_at IS NULL""",
            [h.host for h in hosts],
        )
        placed: dict[str, list[Any]] = {}
        for row in rows:
            placed.setdefault(row["host"], []).append(row)
        leftovers: list[tuple[HostState, str, int]] = []
        for state in hosts:
            reported = {i.instance_id: i.power_state for i in state.instances}
            for row in placed.get(state.host, ()):
                power = reported.pop(row["id"], NOSTATE)
                if row["task_state"] is not None or row["updated_at"] > state.taken_at:
                    continue  # a task is in progress, or the row changed after the report
                if power != row["power_state"] or sync_decision(row["vm_state"], power) != (
                    None,
                    False,
                ):
                    await self._sync_one(ctx, state.host, dict(row), power, state.taken_at)
            leftovers += [(state, instance_id, power) for instance_id, power in reported.items()]
        if leftovers:
            await self._orphans(ctx, leftovers)

    async def _register_hosts(self, ctx: Context, hosts: Sequence[HostState]) -> None:
        """Upsert every reported host in one statement (in host order: no deadlock between two)."""
        ordered = sorted({h.host: h for h in hosts}.values(), key=lambda h: h.host)
        await ctx.conn.execute(
            """INSERT INTO cmp_hosts (host, vcpus, ram_mb, disk_gb, hypervisor_type,
                                      availability_zone, last_report_at)
               SELECT u.*, $7::timestamptz FROM unnest($1::text[], $2::int[], $3::int[], $4::int[],
                                                      $5::text[], $6::text[]) AS u
               ON CONFLICT (host) DO UPDATE SET vcpus = excluded.vcpus,
                   ram_mb = excluded.ram_mb, disk_gb = excluded.disk_gb,
                   hypervisor_type = excluded.hypervisor_type,
                   availability_zone = excluded.availability_zone,
                   last_report_at = greatest(cmp_hosts.last_report_at, excluded.last_report_at)""",
            [h.host for h in ordered],
            [h.vcpus for h in ordered],
            [h.ram_mb for h in ordered],
            [h.disk_gb for h in ordered],
            [h.hypervisor_type for h in ordered],
            [h.availability_zone for h in ordered],
            ctx.clock.now(),
        )

    async def _sync_one(
        self, ctx: Context, host: str, row: dict[str, Any], power: int, taken_at: datetime
    ) -> None:
        vm_state, stop = sync_decision(row["vm_state"], power)
        values: dict[str, Any] = {"power_state": power}
        if vm_state is not None:
            values["vm_state"] = vm_state
            values["status"] = states.status_of(vm_state, None)
        if stop:
            values["task_state"] = states.POWERING_OFF
        names = list(values)
        assigns = ", ".join(f"{n} = ${i + 5}" for i, n in enumerate(names))
        # Only if the row is still what this decision was made on.
        changed = await ctx.conn.fetchval(
            f"""UPDATE cmp_instances SET {assigns}, updated_at = now()
                WHERE id = $1 AND vm_state = $2 AND power_state = $3 AND task_state IS NULL
                  AND updated_at <= $4 AND deleted_at IS NULL RETURNING 1""",
            row["id"],
            row["vm_state"],
            row["power_state"],
            taken_at,
            *[values[n] for n in names],
        )
        if changed is None:
            return
        ctx.log.warning(
            "instance.power_synced",
            instance_id=row["id"],
            host=host,
            vm_state=row["vm_state"],
            old_power_state=row["power_state"],
            power_state=power,
            new_vm_state=vm_state,
            stop=stop,
        )
        await ctx.emit(
            InstancePowerSynced(
                instance_id=row["id"],
                host=host,
                old_power_state=row["power_state"],
                power_state=power,
                vm_state=vm_state,
            )
        )
        if stop:
            await ctx.emit(StopInstance(instance_id=row["id"]), to=address_of(host))
            await self._deadline(ctx, row["id"], states.POWERING_OFF, host=host)

    async def _orphans(self, ctx: Context, leftovers: Sequence[tuple[HostState, str, int]]) -> None:
        """Instances hosts run that the database does not place on them."""
        rows = await ctx.conn.fetch(
            "SELECT id, host, deleted_at, updated_at FROM cmp_instances WHERE id = ANY($1::text[])",
            [instance_id for _, instance_id, _ in leftovers],
        )
        known = {r["id"]: r for r in rows}
        seen = self._orphans_seen()
        for state, instance_id, power in sorted(leftovers, key=lambda x: (x[0].host, x[1])):
            host, row = state.host, known.get(instance_id)
            reason: Literal["unknown", "deleted", "elsewhere"]
            if row is None:
                reason = "unknown"
            elif row["updated_at"] > state.taken_at:
                continue  # it moved or was deleted after the report: the next one tells
            elif row["deleted_at"] is not None:
                reason = "deleted"
            elif row["host"] != host:
                reason = "elsewhere"
            else:
                continue
            if self.destroy_orphans:
                await ctx.emit(DestroyInstance(instance_id=instance_id), to=address_of(host))
            if (host, instance_id) in seen:
                continue  # reported already by this process; a destroy is simply repeated
            seen.add((host, instance_id))
            ctx.log.warning(
                "host.instance_orphaned",
                host=host,
                instance_id=instance_id,
                reason=reason,
                destroyed=self.destroy_orphans,
            )
            await ctx.emit(
                HostInstanceOrphaned(
                    host=host,
                    instance_id=instance_id,
                    power_state=power,
                    reason=reason,
                    destroyed=self.destroy_orphans,
                )
            )

    def _orphans_seen(self) -> set[tuple[str, str]]:
        # Per process, created lazily: the base class owns __init__.
        seen: set[tuple[str, str]] | None = getattr(self, "_orphans_reported", None)
        if seen is None:
            seen = set()
            self._orphans_reported = seen
        return seen
