"""The baseline of the libvirt boot benchmark (:mod:`bench.libvirt_boot`): the test guest booted
by plain libvirt-python, with the domain XML aiostack generates, as a script would do it; and the
libvirt-side helpers of the benchmark: when domains started (lifecycle events), and the removal of
every domain named with the run's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from agents.compute.drivers.domain_xml import DirectBoot, DomainConfig, build_domain_xml
from agents.compute.drivers.host import detect_virt_type, read_cpuinfo
from bench.libvirt_cloud import ROOT, first_line

URI = "qemu:///system"
BOOT_WITHIN_S = 180.0  # TCG, and other tests may boot guests at the same time
FLAVOR = ("m1.nano", 1, 128, 1)  # name, vCPUs, MiB, GiB (cloud/compute/service.py)


@dataclass(frozen=True)
class TestImage:
    kernel: Path
    ramdisk: Path
    disk: Path
    cmdline: str


async def test_image() -> TestImage:
    """``scripts/test-image.sh`` (cached after its first build): the guest's files."""
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "scripts/test-image.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/test-image.sh failed: {done.stderr[-2000:]}")
    found = dict(shlex.split(line)[0].split("=", 1) for line in done.stdout.splitlines() if line)
    return TestImage(
        Path(found["KERNEL"]), Path(found["RAMDISK"]), Path(found["DISK"]), found["CMDLINE"]
    )


async def _qemu_img(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"qemu-img {args[0]}: {err.decode(errors='replace').strip()}")


class PlainLibvirt:
    """The baseline: a script driving libvirt-python directly, with the XML aiostack generates."""

    def __init__(self, conn: Any, image: TestImage, work: Path, watch: StartWatch) -> None:
        self.conn, self.image, self.work, self.watch = conn, image, work, watch
        self.virt_type = detect_virt_type("auto", URI, read_cpuinfo())
        self.base = work / "_base"

    async def stage(self) -> None:
        """The image's files where QEMU may read them (the test image lives under /root): the
        baseline's image cache, like the driver's ``_base``, filled before anything is timed."""
        await asyncio.to_thread(self.base.mkdir, mode=0o755, parents=True)
        for source in (self.image.kernel, self.image.ramdisk, self.image.disk):
            await asyncio.to_thread(shutil.copyfile, source, self.base / source.name)

    async def boot(self, n: int) -> tuple[float, float]:
        """Seconds from the first step to the first console line, and to the domain's start."""
        instance = str(uuid.uuid4())
        root = self.work / instance
        dom: Any = None
        try:
            started = time.perf_counter()
            await asyncio.to_thread(root.mkdir, mode=0o755)
            disk, kernel, ramdisk = root / "disk", root / "kernel", root / "ramdisk"
            base_disk = self.base / self.image.disk.name
            await _qemu_img(
                "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base_disk), str(disk)
            )
            await _qemu_img("resize", "-q", str(disk), str(FLAVOR[3] << 30))
            await asyncio.to_thread(shutil.copyfile, self.base / self.image.kernel.name, kernel)
            await asyncio.to_thread(shutil.copyfile, self.base / self.image.ramdisk.name, ramdisk)
            log = root / "console.log"
            await asyncio.to_thread(log.touch)
            name, vcpus, ram_mb, _ = FLAVOR
            xml = build_domain_xml(
                DomainConfig(
                    name=f"{self.watch.prefix}plain-{instance}",
                    instance_id=instance,
                    display_name=f"bench-baseline-{n}",
                    virt_type=self.virt_type,
                    vcpus=vcpus,
                    ram_mb=ram_mb,
                    disk=str(disk),
                    console_log=str(log),
                    uuid=instance,
                    boot=DirectBoot(str(kernel), str(ramdisk), self.image.cmdline),
                    flavor=name,
                    image_ref="baseline",
                )
            )
            dom = await asyncio.to_thread(self.conn.defineXML, xml)
            await asyncio.to_thread(dom.create)

            async def died() -> str | None:
                alive = await asyncio.to_thread(dom.isActive)
                return None if alive else f"baseline domain {instance} stopped"

            total = await first_line(log, started, BOOT_WITHIN_S, died)
            return total, await self.watch.since(f"{self.watch.prefix}plain-{instance}", started)
        finally:
            if dom is not None:
                await asyncio.to_thread(_remove, dom)
            await asyncio.to_thread(shutil.rmtree, root, True)


def _remove(dom: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)


def remove_domains(conn: Any, prefix: str) -> list[str]:
    """Destroy and undefine every domain named with ``prefix`` (and only those); their names."""
    removed = []
    for dom in conn.listAllDomains(0):
        with contextlib.suppress(libvirt.libvirtError):
            if dom.name().startswith(prefix):
                _remove(dom)
                removed.append(dom.name())
    return removed


def others_running(conn: Any, prefix: str) -> int:
    active = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    return sum(1 for dom in active if not dom.name().startswith(prefix))


_event_thread: threading.Thread | None = None


def open_with_events() -> Any:
    """A connection that delivers lifecycle events: libvirt's default event loop must be
    registered before it opens, and run by a thread (one per process, as libvirt's is)."""
    global _event_thread
    if _event_thread is None:
        libvirt.virEventRegisterDefaultImpl()
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors raise; no printing

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _event_thread = threading.Thread(target=run, name="bench-libvirt-events", daemon=True)
        _event_thread.start()
    return libvirt.open(URI)


class StartWatch:
    """When each domain named with ``prefix`` started (its STARTED event: QEMU is up and the
    guest's CPUs run), in ``time.perf_counter`` seconds; no polling of libvirtd."""

    def __init__(self, conn: Any, prefix: str) -> None:
        self.prefix = prefix
        self.at: dict[str, float] = {}
        self.conn = conn
        self._id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, None
        )

    def _event(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED and dom.name().startswith(self.prefix):
            self.at.setdefault(dom.name(), time.perf_counter())

    async def since(self, name: str, started: float) -> float:
        """Seconds from ``started`` to the domain's start (its event may trail its console)."""
        for _ in range(500):
            if name in self.at:
                return self.at[name] - started
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no STARTED event for domain {name}")

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.domainEventDeregisterAny(self._id)
