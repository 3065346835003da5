"""Handlers that move instance disks to the image service, offload shelved instances, and answer
console reads (the console log, where the VNC console listens).

A snapshot is three handlers: ``compute.snapshot_instance`` captures the disk (the driver stages
it on the host) and sends ``compute.upload_snapshot`` to this same agent, which reports the upload
as started and sends itself the upload proper: an agent's messages go out when its handler
returns, so this is how the conductor learns of each step while it lasts. The upload goes over
HTTP to the image service with the token the command carries: the agent never touches the
database. A failure at any point is reported, never raised: the conductor deletes the image and
puts the server back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp

from agents.compute.base import AgentBase, address_of
from agents.compute.driver import ConsoleUnavailable, DriverError, InstanceNotFound, PowerState
from cloud.runtime.actor import Context, handles
from schemas.compute_consoles import GetVncConsole, VncConsoleReady
from schemas.compute_images import (
    ConsoleOutputReady,
    GetConsoleOutput,
    InstanceOffloaded,
    InstanceSnapshotFinished,
    InstanceSnapshotProgressed,
    OffloadInstance,
    SnapshotInstance,
    UploadSnapshot,
)

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
# A slow image service fails the upload rather than holding the agent's queue forever.
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)


class UploadError(Exception):
    """The image service refused the data (the message has its status and answer)."""


async def upload(
    image_url: str,
    token: str,
    chunks: AsyncIterator[bytes],
    formats: dict[str, str],
) -> None:
    """Set the image's formats (if they differ from the record's) and PUT its data."""
    headers = {"X-Auth-Token": token}
    async with aiohttp.ClientSession(timeout=UPLOAD_TIMEOUT) as http:
        if formats:
            ops = [{"op": "add", "path": f"/{k}", "value": v} for k, v in formats.items()]
            async with http.patch(
                image_url,
                data=json.dumps(ops),
                headers={**headers, "Content-Type": PATCH_TYPE},
            ) as resp:
                if resp.status >= 300:
                    raise UploadError(f"image update: {resp.status} {await resp.text()}")
        async with http.put(
            f"{image_url}/file",
            data=chunks,
            headers={**headers, "Content-Type": "application/octet-stream"},
        ) as resp:
            if resp.status >= 300:
                raise UploadError(f"image upload: {resp.status} {await resp.text()}")


class ImageHandlers(AgentBase):
    """Mixin of :class:`agents.compute.agent.ComputeAgent`."""

    async def _power_state(self, instance_id: str) -> int:
        try:
            return int((await self.driver.get_info(instance_id)).power_state)
        except DriverError:
            return int(PowerState.NOSTATE)

    @handles(SnapshotInstance)
    async def snapshot(self, msg: SnapshotInstance, ctx: Context) -> None:
        try:
            if msg.power_off:  # shelve: a consistent disk, and the instance stays off
                await self.driver.power_off(msg.instance_id)
            staged = await self.driver.snapshot(msg.instance_id, msg.image_id)
        except DriverError as exc:
            await self.driver.discard_snapshot(msg.image_id)
            await self._finished(ctx, msg, error=f"snapshot failed: {exc or type(exc).__name__}")
            return
        power = await self._power_state(msg.instance_id)
        ctx.log.info("instance.snapshot_captured", instance_id=msg.instance_id, image=msg.image_id)
        await ctx.emit(
            InstanceSnapshotProgressed(
                instance_id=msg.instance_id,
                image_id=msg.image_id,
                host=self.host,
                purpose=msg.purpose,
                step="pending_upload",
                power_state=power,
            )
        )
        await ctx.emit(
            UploadSnapshot(
                instance_id=msg.instance_id,
                image_id=msg.image_id,
                image_url=msg.image_url,
                auth_token=msg.auth_token,
                purpose=msg.purpose,
                disk_format=staged.disk_format,
                container_format=staged.container_format,
            ),
            to=address_of(self.host),
        )

    @handles(UploadSnapshot)
    async def upload_snapshot(self, msg: UploadSnapshot, ctx: Context) -> None:
        if not msg.announced:
            await ctx.emit(
                InstanceSnapshotProgressed(
                    instance_id=msg.instance_id,
                    image_id=msg.image_id,
                    host=self.host,
                    purpose=msg.purpose,
                    step="uploading",
                )
            )
            announced = msg.model_copy(update={"announced": True})
            await ctx.emit(announced, to=address_of(self.host))
            return
        formats = {
            k: v
            for k, v in (
                ("disk_format", msg.disk_format),
                ("container_format", msg.container_format),
            )
            if v is not None
        }
        error: str | None = None
        try:
            await upload(
                msg.image_url, msg.auth_token, self.driver.read_snapshot(msg.image_id), formats
            )
        except (DriverError, UploadError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            error = f"upload failed: {exc or type(exc).__name__}"
        except asyncio.CancelledError:
            raise
        finally:
            await self.driver.discard_snapshot(msg.image_id)
        await self._finished(ctx, msg, error=error)

    async def _finished(
        self, ctx: Context, msg: SnapshotInstance | UploadSnapshot, *, error: str | None
    ) -> None:
        if error is not None:
            ctx.log.warning("instance.snapshot_failed", instance_id=msg.instance_id, error=error)
        else:
            ctx.log.info("instance.snapshot_uploaded", instance_id=msg.instance_id)
        await ctx.emit(
            InstanceSnapshotFinished(
                instance_id=msg.instance_id,
                image_id=msg.image_id,
                host=self.host,
                purpose=msg.purpose,
                power_state=await self._power_state(msg.instance_id),
                error=error,
            )
        )

    @handles(OffloadInstance)
    async def offload(self, msg: OffloadInstance, ctx: Context) -> None:
        power = await self._power_state(msg.instance_id)
        await self.driver.destroy(msg.instance_id)
        ctx.log.info("instance.offloaded", instance_id=msg.instance_id)
        await ctx.emit(
            InstanceOffloaded(instance_id=msg.instance_id, host=self.host, power_state=power)
        )
        await self.report(ctx)

    @handles(GetConsoleOutput)
    async def console_output(self, msg: GetConsoleOutput, ctx: Context) -> None:
        output: str | None = None
        error: str | None = None
        try:
            output = await self.driver.console_output(msg.instance_id, msg.length)
        except InstanceNotFound:
            error = "not_found"
        except DriverError as exc:
            error = str(exc) or type(exc).__name__
        await ctx.emit(
            ConsoleOutputReady(
                instance_id=msg.instance_id,
                request_id=msg.request_id,
                host=self.host,
                output=output,
                error=error,
            )
        )

    @handles(GetVncConsole)
    async def vnc_console(self, msg: GetVncConsole, ctx: Context) -> None:
        reply = VncConsoleReady(
            instance_id=msg.instance_id, request_id=msg.request_id, host=self.host
        )
        try:
            where = await self.driver.vnc_console(msg.instance_id)
            reply = reply.model_copy(update={"address": where.host, "port": where.port})
        except InstanceNotFound:
            reply = reply.model_copy(update={"error": "not_found"})
        except ConsoleUnavailable:
            reply = reply.model_copy(update={"error": "unavailable"})
        except DriverError as exc:
            reply = reply.model_copy(update={"error": str(exc) or type(exc).__name__})
        await ctx.emit(reply)
