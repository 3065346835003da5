"""Sagas that move instance disks to and from the image service (createImage, shelve, unshelve),
and the relay of hosts' answers to console reads (output, VNC address: cloud.compute.host_reads).

createImage / shelve: the gateway created the image (``queued``), set ``image_snapshot`` or
``shelving`` and told the host. Each report of the host moves the task state on (Nova's
``image_pending_upload`` → ``image_uploading`` → None, or the ``shelving_*`` ones) and re-arms the
step's deadline (``compute.check_image_deadline``, on the instance's one timer key). A failure
or a missed deadline deletes the image and puts the server back (task state None; a shelve that
already powered it off leaves it SHUTOFF), the error recorded on the instance action.

A shelved instance is offloaded at once by default (Nova's ``shelved_offload_time`` = 0):
the host destroys it, the claim is released, the host cleared → SHELVED_OFFLOADED. An unshelve
boots through the build saga from the shelved image; when the instance is ACTIVE again this saga
restores the server's image reference and deletes the shelved image.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from agents.compute.base import address_of
from cloud.compute import action_log
from cloud.compute.host_reads import REPLY_CHANNEL, store_reply
from cloud.conductor import states
from cloud.conductor.base import ConductorBase, release_claim, timer_key
from cloud.image import repo as image_repo
from cloud.image.views import image_attributes
from cloud.runtime.actor import Context, handles
from cloud.store.conn import DbConnection
from cloud.store.writes import UnitOfWork
from schemas.compute import DestroyInstance, InstanceActivated, InstanceDeleted, InstanceErrored
from schemas.compute_consoles import VncConsoleReady
from schemas.compute_images import (
    CheckImageDeadline,
    ConsoleOutputReady,
    InstanceOffloaded,
    InstanceSnapshotFinished,
    InstanceSnapshotProgressed,
    OffloadInstance,
    OffloadShelved,
    SnapshotPurpose,
)
from schemas.image import ImageDeleted

CONSOLE_CHANNEL = REPLY_CHANNEL
# Task states of each purpose, by the host's step.
STEPS: dict[SnapshotPurpose, dict[str, str]] = {
    "snapshot": {
        "pending_upload": states.IMAGE_PENDING_UPLOAD,
        "uploading": states.IMAGE_UPLOADING,
    },
    "shelve": {
        "pending_upload": states.SHELVING_IMAGE_PENDING_UPLOAD,
        "uploading": states.SHELVING_IMAGE_UPLOADING,
    },
}
SNAPSHOT_STEPS = (states.IMAGE_SNAPSHOT, *STEPS["snapshot"].values())
SHELVE_STEPS = (states.SHELVING, *STEPS["shelve"].values())
# Nova's instance action events.
EVENT_OF: dict[SnapshotPurpose, str] = {
    "snapshot": "compute_snapshot_instance",
    "shelve": "compute_shelve_instance",
}
OFFLOAD_EVENT = "compute_shelve_offload_instance"
UNSHELVE_EVENT = "compute_unshelve_instance"


def shelve_key(instance_id: str) -> str:
    """The timer of a delayed offload (``shelved_offload_time`` > 0)."""
    return f"shelve:{instance_id}"


async def delete_image_in(unit: UnitOfWork | Context, image_id: str | None) -> None:
    """Delete an image as the image service does (the row stays, ``deleted``), in ``unit``'s
    transaction (an API unit of work or a handler's context).

    An upload still running for it loses when it finishes (the delete bumps its attempt); data
    already stored is removed by the image service's cleanup of unreferenced files.
    """
    if not image_id:
        return
    before = await image_repo.mark_deleted(unit.conn, image_id, unit.clock.now())
    if before is not None:
        gone = image_attributes(before) | {"status": "deleted"}
        await unit.emit(ImageDeleted(image_id=image_id, attributes=gone))


class ImageSaga(ConductorBase):
    """Mixin of :class:`cloud.conductor.actor.Conductor`."""

    # Nova's [DEFAULT] shelved_offload_time: 0 offloads at once, -1 never, N: after N seconds.
    shelved_offload_time: float = 0

    async def _lock_image_row(self, ctx: Context, instance_id: str) -> dict[str, Any] | None:
        row = await ctx.conn.fetchrow(
            """SELECT id, vm_state, task_state, host, image_ref, power_state, snapshot_image_id,
                      shelved_image_id, base_image_ref
               FROM cmp_instances WHERE id = $1 AND deleted_at IS NULL FOR UPDATE""",
            instance_id,
        )
        return None if row is None else dict(row)

    async def _image_deadline(
        self, ctx: Context, instance_id: str, step: str, image_id: str | None
    ) -> None:
        seconds = self.deadline_of(step)
        await ctx.schedule(
            CheckImageDeadline(
                instance_id=instance_id, step=step, deadline_s=seconds, image_id=image_id
            ),
            key=timer_key(instance_id),
            after=timedelta(seconds=seconds),
        )

    # -- snapshot (createImage, shelve) -------------------------------------------------------

    @handles(InstanceSnapshotProgressed)
    async def snapshot_progressed(self, msg: InstanceSnapshotProgressed, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        steps = SNAPSHOT_STEPS if msg.purpose == "snapshot" else SHELVE_STEPS
        if row is None or row["snapshot_image_id"] != msg.image_id:
            return  # deleted, or a report about a snapshot that already failed
        if row["task_state"] not in steps:
            return
        task = STEPS[msg.purpose][msg.step]
        values: dict[str, Any] = {"task_state": task}
        if msg.power_state is not None:
            values["power_state"] = msg.power_state
        await self._set(ctx, msg.instance_id, **values)
        await self._image_deadline(ctx, msg.instance_id, task, msg.image_id)

    @handles(InstanceSnapshotFinished)
    async def snapshot_finished(self, msg: InstanceSnapshotFinished, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        if row is None or row["snapshot_image_id"] != msg.image_id:
            return
        if row["task_state"] not in (*SNAPSHOT_STEPS, *SHELVE_STEPS):
            return  # a delete took over: it deletes the image too
        if msg.error is not None:
            await self._snapshot_failed(ctx, row, msg.purpose, msg.error, msg.power_state)
            return
        await ctx.cancel_timer(timer_key(msg.instance_id))
        values: dict[str, Any] = {"task_state": None, "snapshot_image_id": None}
        if msg.power_state is not None:
            values["power_state"] = msg.power_state
        if msg.purpose == "shelve":
            values |= {
                "vm_state": states.SHELVED,
                "shelved_image_id": msg.image_id,
                "shelved_at": ctx.clock.now(),
                "shelved_host": msg.host,
                "base_image_ref": row["base_image_ref"] or row["image_ref"],
            }
        await self._set(ctx, msg.instance_id, **values)
        await action_log.event_finished(ctx, msg.instance_id, EVENT_OF[msg.purpose], host=msg.host)
        ctx.log.info("instance.snapshot_done", instance_id=msg.instance_id, purpose=msg.purpose)
        if msg.purpose == "shelve":
            if self.shelved_offload_time == 0:
                await self.start_offload(ctx, msg.instance_id, msg.host)
            elif self.shelved_offload_time > 0:
                await ctx.schedule(
                    OffloadShelved(instance_id=msg.instance_id),
                    key=shelve_key(msg.instance_id),
                    after=timedelta(seconds=self.shelved_offload_time),
                )

    async def _snapshot_failed(
        self,
        ctx: Context,
        row: dict[str, Any],
        purpose: SnapshotPurpose,
        error: str,
        power_state: int | None,
    ) -> None:
        instance_id = row["id"]
        await ctx.cancel_timer(timer_key(instance_id))
        await delete_image_in(ctx, row["snapshot_image_id"])
        values: dict[str, Any] = {"task_state": None, "snapshot_image_id": None}
        if power_state is not None:
            values["power_state"] = power_state
            if row["vm_state"] == states.ACTIVE and power_state == 4:
                values["vm_state"] = states.STOPPED  # shelve powered it off before it failed
        await self._set(ctx, instance_id, **values)
        ctx.log.warning("instance.snapshot_failed", instance_id=instance_id, error=error)
        await action_log.event_finished(
            ctx, instance_id, EVENT_OF[purpose], host=row["host"], error=error
        )

    @handles(CheckImageDeadline)
    async def image_deadline(self, msg: CheckImageDeadline, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        if row is None or row["task_state"] != msg.step:
            return  # the step finished in time
        error = f"step {msg.step} timed out: no outcome within {msg.deadline_s:g}s"
        if msg.step == states.SHELVING_OFFLOADING:
            # The host is gone or stuck: the disk is safe in the image, so offload anyway and
            # tell the host (if it comes back) not to keep the instance.
            ctx.log.warning("instance.offload_forced", instance_id=msg.instance_id)
            await self._finish_offload(ctx, msg.instance_id, row["host"], error=error)
            if row["host"]:
                await ctx.emit(
                    DestroyInstance(instance_id=msg.instance_id), to=address_of(row["host"])
                )
            return
        purpose: SnapshotPurpose = "shelve" if msg.step in SHELVE_STEPS else "snapshot"
        await self._snapshot_failed(ctx, row, purpose, error, None)

    # -- offload (shelve, shelveOffload) ------------------------------------------------------

    async def start_offload(self, ctx: Context, instance_id: str, host: str | None) -> None:
        """Tell the host to drop the shelved instance (task ``shelving_offloading``)."""
        await self._set(ctx, instance_id, task_state=states.SHELVING_OFFLOADING)
        await action_log.event_started(ctx, instance_id, OFFLOAD_EVENT, host=host)
        if host is None:
            await self._finish_offload(ctx, instance_id, None)
            return
        await ctx.emit(OffloadInstance(instance_id=instance_id), to=address_of(host))
        await self._image_deadline(ctx, instance_id, states.SHELVING_OFFLOADING, None)

    @handles(OffloadShelved)
    async def offload_shelved(self, msg: OffloadShelved, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        if row is not None and row["vm_state"] == states.SHELVED and row["task_state"] is None:
            await self.start_offload(ctx, msg.instance_id, row["host"])

    @handles(InstanceOffloaded)
    async def offloaded(self, msg: InstanceOffloaded, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        if row is None or row["task_state"] != states.SHELVING_OFFLOADING:
            return
        await self._finish_offload(ctx, msg.instance_id, msg.host, power_state=msg.power_state)

    async def _finish_offload(
        self,
        ctx: Context,
        instance_id: str,
        host: str | None,
        *,
        power_state: int = 4,
        error: str | None = None,
    ) -> None:
        await ctx.cancel_timer(timer_key(instance_id))
        await ctx.cancel_timer(shelve_key(instance_id))
        await release_claim(ctx.conn, instance_id)
        await self._set(
            ctx,
            instance_id,
            vm_state=states.SHELVED_OFFLOADED,
            task_state=None,
            host=None,
            power_state=power_state,
        )
        await action_log.event_finished(ctx, instance_id, OFFLOAD_EVENT, host=host, error=error)
        ctx.log.info("instance.shelved_offloaded", instance_id=instance_id, host=host)

    # -- unshelve (the build saga runs it; this only closes it) ----------------------------------

    @handles(InstanceActivated)
    async def activated(self, msg: InstanceActivated, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        if row is None or row["shelved_image_id"] is None or row["vm_state"] != states.ACTIVE:
            return  # an ordinary build
        await self._unshelved(ctx, row)
        await action_log.event_finished(ctx, msg.instance_id, UNSHELVE_EVENT, host=msg.host)
        await delete_image_in(ctx, row["shelved_image_id"])  # as Nova does once unshelved

    @handles(InstanceErrored)
    async def errored(self, msg: InstanceErrored, ctx: Context) -> None:
        row = await self._lock_image_row(ctx, msg.instance_id)
        if row is None or row["shelved_image_id"] is None:
            return
        if msg.step == states.SCHEDULING:
            # No host for the unshelve: Nova leaves the instance shelved (offloaded).
            await self._set(
                ctx,
                msg.instance_id,
                vm_state=states.SHELVED_OFFLOADED,
                task_state=None,
                image_ref=row["base_image_ref"] or row["image_ref"],
            )
        await action_log.event_finished(
            ctx, msg.instance_id, UNSHELVE_EVENT, host=msg.host, error=msg.reason
        )

    async def _unshelved(self, ctx: Context, row: dict[str, Any]) -> None:
        await self._set(
            ctx,
            row["id"],
            image_ref=row["base_image_ref"] or row["image_ref"],
            shelved_image_id=None,
            shelved_at=None,
            shelved_host=None,
            base_image_ref=None,
        )

    @handles(InstanceDeleted)
    async def deleted(self, msg: InstanceDeleted, ctx: Context) -> None:
        """A deleted server's snapshot in progress and shelved image go too, as in Nova."""
        row = await ctx.conn.fetchrow(
            "SELECT snapshot_image_id, shelved_image_id FROM cmp_instances WHERE id = $1",
            msg.instance_id,
        )
        if row is None:
            return
        await delete_image_in(ctx, row["snapshot_image_id"])
        await delete_image_in(ctx, row["shelved_image_id"])

    # -- console output ---------------------------------------------------------------------

    @handles(ConsoleOutputReady)
    async def console_ready(self, msg: ConsoleOutputReady, ctx: Context) -> None:
        await store_console_reply(ctx.conn, msg)

    @handles(VncConsoleReady)
    async def vnc_console_ready(self, msg: VncConsoleReady, ctx: Context) -> None:
        address: str | None = None
        error = msg.error
        if error is None and msg.address is not None and msg.port is not None:
            address = json.dumps({"host": msg.address, "port": msg.port})
        elif error is None:
            error = "the host gave no address"
        await store_reply(ctx.conn, msg.request_id, msg.instance_id, address, error)


async def store_console_reply(conn: DbConnection, msg: ConsoleOutputReady) -> None:
    """Keep a host's console output for the API request waiting on it, and wake that request."""
    await store_reply(conn, msg.request_id, msg.instance_id, msg.output, msg.error)
