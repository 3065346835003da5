"""The ComputeDriver operations of :class:`~agents.compute.drivers.libvirt.LibvirtDriver`, written
over a few domain primitives the driver provides (so this module needs no libvirt import).

Operations on one instance are serialized by a per-instance lock; each is idempotent (asking for
the state the instance is in succeeds), as the protocol says.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agents.compute.driver import (
    DiskSnapshot,
    DriverError,
    InstanceInfo,
    InstanceNotFound,
    InstanceSpec,
    PowerState,
)
from agents.compute.drivers import host
from agents.compute.drivers.domain_xml import DirectBoot, DomainConfig, build_domain_xml
from agents.compute.drivers.image_cache import ImageCache, ImageMeta
from agents.compute.drivers.layout import InstanceFiles, as_uuid, dump_config, load_config

BOOTABLE_FORMATS = ("qcow2", "raw")
_OFF = (PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.NOSTATE)


class LifecycleOps:
    images: ImageCache
    snapshots_dir: Path
    virt_type: str
    vnc_listen: str
    _instance_locks: dict[str, asyncio.Lock]

    # -- primitives (LibvirtDriver implements them) ----------------------------------------------
    def files(self, instance_id: str) -> InstanceFiles:
        raise NotImplementedError

    def domain_name(self, instance_id: str) -> str:
        raise NotImplementedError

    async def domain(self, instance_id: str) -> Any:
        raise NotImplementedError

    async def get_info(self, instance_id: str) -> InstanceInfo:
        raise NotImplementedError

    async def power_state(self, dom: Any) -> PowerState:
        raise NotImplementedError

    async def define(self, xml: str) -> Any:
        raise NotImplementedError

    async def undefine(self, instance_id: str) -> None:
        raise NotImplementedError

    async def hard_stop(self, dom: Any) -> None:
        raise NotImplementedError

    async def clean_stop(self, dom: Any) -> bool:
        raise NotImplementedError

    async def start_domain(self, dom: Any) -> None:
        raise NotImplementedError

    async def pause_domain(self, dom: Any) -> None:
        raise NotImplementedError

    async def resume_domain(self, dom: Any) -> None:
        raise NotImplementedError

    async def managed_save(self, dom: Any) -> None:
        raise NotImplementedError

    async def drop_managed_save(self, dom: Any) -> None:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def _locked(self, instance_id: str) -> AsyncIterator[None]:
        locks = self.__dict__.setdefault("_instance_locks", {})
        async with locks.setdefault(instance_id, asyncio.Lock()):
            yield

    async def _boot_files(self, meta: ImageMeta, files: InstanceFiles) -> DirectBoot | None:
        """Fetch the kernel/ramdisk the image names (direct kernel boot) into the instance dir."""
        kernel_id = meta.properties.get("kernel_id")
        if not kernel_id:
            if meta.properties.get("ramdisk_id"):
                raise DriverError(
                    f"image {meta.id} has a ramdisk_id but no kernel_id: not bootable"
                )
            return None
        parts: dict[str, Path] = {}
        for role, image_id, fmt, dest in (
            ("kernel", kernel_id, "aki", files.kernel),
            ("ramdisk", meta.properties.get("ramdisk_id"), "ari", files.ramdisk),
        ):
            if not image_id:
                continue
            part = await self.images.source.describe(image_id)
            if part.disk_format not in (fmt, "raw", None):
                raise DriverError(
                    f"image {meta.id}: its {role} {image_id} is a {part.disk_format} image, "
                    f"not a {role} ({fmt})"
                )
            cached = await self.images.fetch(part)
            if role == "kernel" and not host.is_linux_kernel(await _head(cached)):
                raise DriverError(
                    f"image {meta.id}: its kernel {image_id} is not a bootable kernel "
                    "(neither a Linux boot image nor ELF)"
                )
            await asyncio.to_thread(shutil.copyfile, cached, dest)
            parts[role] = dest
        return DirectBoot(
            str(parts["kernel"]),
            str(parts["ramdisk"]) if "ramdisk" in parts else None,
            meta.properties.get("os_command_line") or "console=ttyS0",
        )

    async def _make_disk(self, spec: InstanceSpec, files: InstanceFiles) -> DomainConfig:
        """Root disk (overlay on the cached image) and boot files; the domain's config."""
        meta = await self.images.source.describe(spec.image_ref)
        if meta.disk_format in ("aki", "ari"):
            raise DriverError(
                f"image {meta.id} is a {meta.disk_format} (a kernel or ramdisk), not bootable"
            )
        if meta.disk_format not in BOOTABLE_FORMATS:
            raise DriverError(f"image {meta.id}: cannot boot a {meta.disk_format} disk")
        await asyncio.to_thread(files.root.mkdir, mode=0o755, parents=True, exist_ok=True)
        boot = await self._boot_files(meta, files)
        base = await self.images.fetch(meta)
        # Without a kernel the firmware boots the disk; one without a boot sector would leave an
        # "ACTIVE" guest stuck in the BIOS forever: refuse it, saying why.
        scratch = files.root / "first-sector"
        if boot is None and not await host.has_boot_sector(base, meta.disk_format, scratch):
            raise DriverError(
                f"image {meta.id} is not bootable: it names no kernel (kernel_id) and its disk "
                "has no boot sector"
            )
        await asyncio.to_thread(files.disk.unlink, missing_ok=True)
        await host.create_overlay(base, meta.disk_format, files.disk, spec.flavor.disk_gb)
        return DomainConfig(
            name=self.domain_name(spec.instance_id),
            instance_id=spec.instance_id,
            display_name=spec.name,
            virt_type=self.virt_type,
            vcpus=spec.flavor.vcpus,
            ram_mb=spec.flavor.ram_mb,
            disk=str(files.disk),
            console_log=str(files.console_log),
            uuid=as_uuid(spec.instance_id),
            boot=boot,
            vnc_listen=self.vnc_listen,
            flavor=spec.flavor.name,
            image_ref=spec.image_ref,
        )

    async def _define(self, cfg: DomainConfig, files: InstanceFiles) -> Any:
        await asyncio.to_thread(files.config.write_text, dump_config(cfg))
        # libvirt (virtlogd) writes the log; it exists from the start so a read never races it.
        await asyncio.to_thread(files.console_log.touch)
        return await self.define(build_domain_xml(cfg))

    async def _stop(self, dom: Any, *, clean: bool) -> None:
        state = await self.power_state(dom)
        if state in _OFF or state == PowerState.SUSPENDED:
            return
        if clean and state == PowerState.RUNNING and await self.clean_stop(dom):
            return
        await self.hard_stop(dom)

    async def _require(self, dom: Any, instance_id: str, *allowed: PowerState) -> PowerState:
        state = await self.power_state(dom)
        if state not in allowed:
            raise DriverError(f"instance {instance_id} is {state.name.lower()}")
        return state

    # -- the protocol ----------------------------------------------------------------------------

    async def spawn(self, spec: InstanceSpec) -> InstanceInfo:
        async with self._locked(spec.instance_id):
            return await self._spawn(spec)

    async def _spawn(self, spec: InstanceSpec) -> InstanceInfo:
        try:
            return await self.get_info(spec.instance_id)
        except InstanceNotFound:
            pass
        files = self.files(spec.instance_id)
        try:
            cfg = await self._make_disk(spec, files)
            await self.start_domain(await self._define(cfg, files))
        except BaseException:
            await self._remove(spec.instance_id)  # nothing half-built stays
            raise
        return await self.get_info(spec.instance_id)

    async def _remove(self, instance_id: str) -> None:
        await self.undefine(instance_id)
        await asyncio.to_thread(shutil.rmtree, self.files(instance_id).root, True)

    async def destroy(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            await self._remove(instance_id)

    async def power_on(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            dom = await self.domain(instance_id)
            state = await self.power_state(dom)
            if state == PowerState.PAUSED:
                await self.resume_domain(dom)
            elif state != PowerState.RUNNING:
                await self.start_domain(dom)  # also restores a suspended (saved) instance

    async def power_off(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            await self._stop(await self.domain(instance_id), clean=True)

    async def reboot(self, instance_id: str, *, hard: bool = False) -> None:
        async with self._locked(instance_id):
            dom = await self.domain(instance_id)
            state = await self.power_state(dom)
            if not hard and state == PowerState.RUNNING and await self.clean_stop(dom):
                await self.start_domain(dom)
                return
            await self.hard_stop(dom)
            await self.drop_managed_save(dom)  # a hard reboot boots afresh
            await self.start_domain(dom)

    async def pause(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            dom = await self.domain(instance_id)
            if await self._require(dom, instance_id, PowerState.RUNNING, PowerState.PAUSED) == (
                PowerState.RUNNING
            ):
                await self.pause_domain(dom)

    async def unpause(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            dom = await self.domain(instance_id)
            if await self._require(dom, instance_id, PowerState.PAUSED, PowerState.RUNNING) == (
                PowerState.PAUSED
            ):
                await self.resume_domain(dom)

    async def suspend(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            dom = await self.domain(instance_id)
            allowed = (PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED)
            if await self._require(dom, instance_id, *allowed) != PowerState.SUSPENDED:
                await self.managed_save(dom)

    async def resume(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            dom = await self.domain(instance_id)
            allowed = (PowerState.SUSPENDED, PowerState.RUNNING)
            if await self._require(dom, instance_id, *allowed) == PowerState.SUSPENDED:
                await self.start_domain(dom)

    # -- disks to the image service, console -----------------------------------------------------

    def _staged(self, image_id: str) -> Path:
        if not image_id or "/" in image_id or image_id.startswith("."):
            raise DriverError(f"invalid image id {image_id!r}")
        return self.snapshots_dir / image_id

    async def snapshot(self, instance_id: str, image_id: str) -> DiskSnapshot:
        staged = self._staged(image_id)
        async with self._locked(instance_id):
            if not await asyncio.to_thread(staged.exists):
                dom = await self.domain(instance_id)
                await asyncio.to_thread(self.snapshots_dir.mkdir, parents=True, exist_ok=True)
                partial = staged.with_name(f".{image_id}.part")
                # A running guest is paused while its disk is copied: a consistent image.
                paused = await self.power_state(dom) == PowerState.RUNNING
                if paused:
                    await self.pause_domain(dom)
                try:
                    await host.convert(self.files(instance_id).disk, partial)
                    await asyncio.to_thread(partial.replace, staged)
                finally:
                    if paused:
                        await self.resume_domain(dom)
                    await asyncio.to_thread(partial.unlink, missing_ok=True)
        size = (await asyncio.to_thread(staged.stat)).st_size
        return DiskSnapshot(image_id, "qcow2", "bare", size)

    async def read_snapshot(self, image_id: str) -> AsyncIterator[bytes]:
        staged = self._staged(image_id)
        try:
            f = await asyncio.to_thread(staged.open, "rb")
        except OSError:
            raise DriverError(f"no snapshot staged as {image_id}") from None
        try:
            while chunk := await asyncio.to_thread(f.read, 1 << 20):
                yield chunk
        finally:
            await asyncio.to_thread(f.close)

    async def discard_snapshot(self, image_id: str) -> None:
        await asyncio.to_thread(self._staged(image_id).unlink, missing_ok=True)

    async def console_output(self, instance_id: str, length: int | None = None) -> str:
        path = self.files(instance_id).console_log
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            await self.get_info(instance_id)  # InstanceNotFound, else an empty console
            raw = b""
        lines = raw.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        shown = lines.split("\n")
        if shown and shown[-1] == "":
            shown.pop()
        if length is not None:
            shown = shown[-length:] if length > 0 else []
        return "\n".join(shown)

    # -- recreating an instance's domain (resize, rebuild) ---------------------------------------

    async def _config(self, instance_id: str, files: InstanceFiles) -> DomainConfig:
        try:
            return load_config(await asyncio.to_thread(files.config.read_text))
        except FileNotFoundError:
            raise DriverError(f"instance {instance_id} has no record of its domain here") from None


async def _head(path: Path, size: int = 0x206) -> bytes:
    def read() -> bytes:
        with path.open("rb") as f:
            return f.read(size)

    return await asyncio.to_thread(read)
