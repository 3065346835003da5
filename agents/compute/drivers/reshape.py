"""Cold resize (with confirm/revert) and rebuild of the libvirt driver: operations that stop the
domain, change its disk or definition, and start it again. Also the image cache's pruning.

A resize on the host that runs the instance keeps ``disk.resize-backup`` and the old domain record
until it is confirmed (dropped) or reverted (put back), so a revert restores the old disk exactly,
even after the guest wrote to the grown one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from pathlib import Path

from agents.compute.driver import InstanceInfo, InstanceNotFound, InstanceSpec, PowerState
from agents.compute.drivers import host
from agents.compute.drivers.layout import dump_config, load_config
from agents.compute.drivers.lifecycle import LifecycleOps
from schemas.compute import FlavorSpec


class ReshapeOps(LifecycleOps):
    instances_dir: Path

    async def prune_image_cache(self) -> list[str]:
        """Remove cached images that no instance here is backed by; the ids removed.

        Kernels and ramdisks are copied into each instance, so only root disk bases are in use;
        images fetched recently are kept too (see :meth:`ImageCache.prune`).
        """

        def in_use() -> set[str]:
            return {
                load_config(p.read_text()).image_ref
                for p in self.instances_dir.glob("*/domain.json")
            }

        return await self.images.prune(await asyncio.to_thread(in_use))

    async def resize(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        async with self._locked(spec.instance_id):
            files = self.files(spec.instance_id)
            try:
                dom = await self.domain(spec.instance_id)
            except InstanceNotFound:  # a resize to this host: the instance starts here
                await self._spawn(spec)
                dom = await self.domain(spec.instance_id)
                if not power_on:
                    await self.hard_stop(dom)
                return await self.get_info(spec.instance_id)
            await self._stop(dom, clean=True)
            cfg = await self._config(spec.instance_id, files)
            if not await asyncio.to_thread(files.config_backup.exists):
                await asyncio.to_thread(shutil.copyfile, files.disk, files.disk_backup)
                await asyncio.to_thread(files.config_backup.write_text, dump_config(cfg))
            await host.grow(files.disk, spec.flavor.disk_gb)
            resized = dataclasses.replace(
                cfg, vcpus=spec.flavor.vcpus, ram_mb=spec.flavor.ram_mb, flavor=spec.flavor.name
            )
            dom = await self._define(resized, files)
            if power_on:
                await self.start_domain(dom)
            return await self.get_info(spec.instance_id)

    async def confirm_resize(self, instance_id: str) -> None:
        async with self._locked(instance_id):
            files = self.files(instance_id)
            for path in (files.disk_backup, files.config_backup):
                await asyncio.to_thread(path.unlink, missing_ok=True)

    async def revert_resize(self, instance_id: str, flavor: FlavorSpec) -> InstanceInfo:
        async with self._locked(instance_id):
            files = self.files(instance_id)
            dom = await self.domain(instance_id)  # a destroyed instance stays destroyed
            was = await self.power_state(dom)
            await self._stop(dom, clean=False)
            try:
                old = load_config(await asyncio.to_thread(files.config_backup.read_text))
            except FileNotFoundError:  # nothing kept (a resize from another host): old flavor
                old = await self._config(instance_id, files)
            else:
                await asyncio.to_thread(os.replace, files.disk_backup, files.disk)
                await asyncio.to_thread(files.config_backup.unlink)
            old = dataclasses.replace(
                old, vcpus=flavor.vcpus, ram_mb=flavor.ram_mb, flavor=flavor.name
            )
            dom = await self._define(old, files)
            if was in (PowerState.RUNNING, PowerState.PAUSED):
                await self.start_domain(dom)
            return await self.get_info(instance_id)

    async def rebuild(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        async with self._locked(spec.instance_id):
            files = self.files(spec.instance_id)
            dom = await self.domain(spec.instance_id)  # rebuilding needs the instance
            await self.hard_stop(dom)
            await self.drop_managed_save(dom)  # saved memory of the old disk is meaningless
            cfg = await self._make_disk(spec, files)
            dom = await self._define(cfg, files)
            if power_on:
                await self.start_domain(dom)
            return await self.get_info(spec.instance_id)
