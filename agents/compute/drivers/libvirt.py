"""``LibvirtDriver``: instances as libvirt domains (QEMU/KVM, or TCG where the CPU has no
hardware virtualization; libvirt's ``test:///default`` for tests without a daemon).

The only module of the project that imports libvirt. Every libvirt call is blocking, so each runs
on this driver's own thread pool (the event loop never waits on libvirtd, and a slow libvirtd
cannot starve the default executor); qemu-img runs as asyncio subprocesses. Lifecycle events come
from libvirt's default event loop, run by one daemon thread per process, and are handed to the
asyncio loop, where :attr:`LibvirtDriver.on_power_change` hears the instance's new power state
(a guest that shuts itself down, a domain killed behind our back).

The connection opens on first use and reopens after libvirtd went away, so an agent started
before libvirtd (or across a libvirtd restart) only sees :class:`HypervisorUnavailable` meanwhile
(and waits; an error of a live connection is a :class:`DriverError`). The
operations themselves are in :mod:`.lifecycle` and :mod:`.reshape`, over the primitives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import libvirt
import structlog

from agents.compute.driver import (
    ComputeDriver,
    ConsoleAddress,
    ConsoleUnavailable,
    DriverError,
    HostResources,
    HypervisorUnavailable,
    InstanceInfo,
    InstanceNotFound,
    PowerCallback,
    PowerState,
)
from agents.compute.drivers.domain_xml import parse_domain
from agents.compute.drivers.host import detect_virt_type, read_cpuinfo
from agents.compute.drivers.image_cache import ImageCache, ImageSource
from agents.compute.drivers.layout import InstanceFiles
from agents.compute.drivers.reshape import ReshapeOps

log = structlog.get_logger("aiostack.compute.libvirt")
T = TypeVar("T")

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}
# Errors that mean the connection itself is gone: drop it, the next call reconnects.
_CONNECTION_ERRORS = {libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT}
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)

_event_thread: threading.Thread | None = None
_event_lock = threading.Lock()


def _ensure_event_loop() -> None:
    """libvirt's default event implementation, run by one daemon thread for the whole process.

    Must be registered before a connection opens, for that connection to deliver events and
    keepalives. Process-wide because libvirt's is.
    """
    global _event_thread
    with _event_lock:
        if _event_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        # libvirt prints every error to stderr by default; ours become DriverErrors instead.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # one bad callback must not end every event delivery
                    log.exception("libvirt.event_loop_error")

        _event_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _event_thread.start()


class LibvirtDriver(ReshapeOps):
    def __init__(
        self,
        *,
        instances_dir: Path,
        image_source: ImageSource,
        uri: str = "qemu:///system",
        virt_type: str = "auto",
        domain_prefix: str = "aiostack-",
        shutdown_timeout_s: float = 60.0,
        vnc_listen: str = "127.0.0.1",
        on_power_change: PowerCallback | None = None,
    ) -> None:
        self.uri = uri
        self.virt_type = detect_virt_type(virt_type, uri, read_cpuinfo())
        self.instances_dir = instances_dir
        self.images = ImageCache(instances_dir / "_base", image_source)
        self.snapshots_dir = instances_dir / "_snapshots"
        self.domain_prefix = domain_prefix
        self.shutdown_timeout_s = shutdown_timeout_s
        self.vnc_listen = vnc_listen
        self.on_power_change = on_power_change
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="libvirt")
        self._conn: Any = None
        self._callback_id: int | None = None
        self._conn_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- connection and calls ----------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking libvirt call on the driver's threads, translating its errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                raise InstanceNotFound(str(exc)) from exc
            message = exc.get_error_message() or str(exc)
            if code in _CONNECTION_ERRORS and not await self._alive():
                self._conn = None  # the next call reconnects
                raise HypervisorUnavailable(f"libvirt at {self.uri}: {message}") from exc
            raise DriverError(f"libvirt: {message}") from exc

    async def _alive(self) -> bool:
        """Whether the connection still stands (a system error may be a file's, not libvirtd's)."""
        conn = self._conn
        if conn is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            return bool(await loop.run_in_executor(self._executor, conn.isAlive))
        except libvirt.libvirtError:
            return False

    def _open_sync(self) -> Any:
        _ensure_event_loop()
        conn = libvirt.open(self.uri)
        self._callback_id = conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle_event, None
        )
        try:  # the test driver runs in-process: no keepalive, no close callback
            conn.setKeepAlive(5, 3)
            conn.registerCloseCallback(self._closed, None)
        except libvirt.libvirtError:
            pass
        return conn

    async def conn(self) -> Any:
        """The open connection, (re)opened when needed."""
        self._loop = asyncio.get_running_loop()
        if self._conn is not None:
            return self._conn
        async with self._conn_lock:
            if self._conn is None:
                self._conn = await self._call(self._open_sync)
                log.info("libvirt.connected", uri=self.uri, virt_type=self.virt_type)
        return self._conn

    def _closed(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self._conn = None  # libvirtd went away: reconnect on next use
        log.warning("libvirt.connection_lost", uri=self.uri, reason=reason)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:

            def close_sync() -> None:
                if self._callback_id is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.domainEventDeregisterAny(self._callback_id)
                conn.close()

            await self._call(close_sync)
        for task in list(self._tasks):
            task.cancel()
        self._executor.shutdown(wait=False)

    async def destroy(self, instance_id: str) -> None:
        """Remove the instance, then the cached images no instance uses any more (past the
        cache's grace period: a base fetched minutes ago may be about to serve a spawn)."""
        await super().destroy(instance_id)
        removed = await self.prune_image_cache()
        if removed:
            log.info("libvirt.image_cache_pruned", images=removed)

    # -- names and lookups ---------------------------------------------------------------------

    def domain_name(self, instance_id: str) -> str:
        return f"{self.domain_prefix}{instance_id}"

    def files(self, instance_id: str) -> InstanceFiles:
        if not instance_id or "/" in instance_id or instance_id.startswith((".", "_")):
            raise InstanceNotFound(f"invalid instance id {instance_id!r}")
        return InstanceFiles(self.instances_dir / instance_id)

    async def domain(self, instance_id: str) -> Any:
        """The instance's domain; :class:`InstanceNotFound` when libvirt has none."""
        conn = await self.conn()
        return await self._call(conn.lookupByName, self.domain_name(instance_id))

    @staticmethod
    def _state_sync(dom: Any) -> tuple[PowerState, int, int]:
        state, _reason = dom.state()
        power = _STATES.get(state, PowerState.NOSTATE)
        if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
            power = PowerState.SUSPENDED  # suspended = memory saved to disk, domain off
        _state, max_kib, _mem, vcpus, _cpu_time = dom.info()
        return power, vcpus, max_kib // 1024

    async def get_info(self, instance_id: str) -> InstanceInfo:
        dom = await self.domain(instance_id)
        power, vcpus, ram_mb = await self._call(self._state_sync, dom)
        return InstanceInfo(instance_id, power, vcpus, ram_mb)

    async def power_state(self, dom: Any) -> PowerState:
        return (await self._call(self._state_sync, dom))[0]

    async def list_instances(self) -> list[str]:
        conn = await self.conn()
        domains = await self._call(conn.listAllDomains, 0)
        names = await self._call(lambda: [d.name() for d in domains])
        n = len(self.domain_prefix)
        return sorted(name[n:] for name in names if name.startswith(self.domain_prefix))

    async def host_resources(self) -> HostResources:
        conn = await self.conn()
        _model, memory_mb, cpus, *_ = await self._call(conn.getInfo)

        def disk_gb() -> int:
            self.instances_dir.mkdir(parents=True, exist_ok=True)
            return shutil.disk_usage(self.instances_dir).total >> 30

        kind = "test" if self.virt_type == "test" else "QEMU"  # Nova says QEMU for kvm too
        return HostResources(kind, cpus, memory_mb, await asyncio.to_thread(disk_gb))

    async def vnc_console(self, instance_id: str) -> ConsoleAddress:
        """Where the running instance's VNC server listens (for the console proxy): the port
        libvirt allocated at start, read from the live domain XML."""
        dom = await self.domain(instance_id)
        facts = parse_domain(await self._call(dom.XMLDesc, 0))
        if not facts.has_vnc:
            raise ConsoleUnavailable(f"instance {instance_id} has no VNC graphics")
        if facts.vnc_port is None:
            state = (await self._call(self._state_sync, dom))[0]
            raise DriverError(f"instance {instance_id} is {state.name.lower()}: no VNC server")
        return ConsoleAddress(facts.vnc_listen or self.vnc_listen, facts.vnc_port)

    # -- libvirt calls the operations use --------------------------------------------------------

    async def define(self, xml: str) -> Any:
        conn = await self.conn()
        return await self._call(conn.defineXML, xml)

    async def undefine(self, instance_id: str) -> None:
        """Stop (hard) and forget the domain; a missing one is fine."""

        def sync(dom: Any) -> None:
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError as exc:  # it stopped meanwhile
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise
            dom.undefineFlags(_UNDEFINE_FLAGS)

        with contextlib.suppress(InstanceNotFound):
            await self._call(sync, await self.domain(instance_id))

    async def hard_stop(self, dom: Any) -> None:
        def sync() -> None:
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise

        await self._call(sync)

    async def clean_stop(self, dom: Any) -> bool:
        """Ask the guest to power off (ACPI); True when it did within the shutdown timeout."""
        await self._call(dom.shutdown)
        deadline = asyncio.get_running_loop().time() + self.shutdown_timeout_s
        while await self._call(dom.isActive):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def start_domain(self, dom: Any) -> None:
        """Boot a defined domain (restoring its managed save, if it has one)."""
        await self._call(dom.create)

    async def pause_domain(self, dom: Any) -> None:
        await self._call(dom.suspend)

    async def resume_domain(self, dom: Any) -> None:
        await self._call(dom.resume)

    async def managed_save(self, dom: Any) -> None:
        await self._call(dom.managedSave, 0)

    async def drop_managed_save(self, dom: Any) -> None:
        if await self._call(dom.hasManagedSaveImage, 0):
            await self._call(dom.managedSaveRemove, 0)

    async def inactive_xml(self, dom: Any) -> str:
        return str(await self._call(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE))

    # -- lifecycle events ------------------------------------------------------------------------

    def _lifecycle_event(self, _c: Any, dom: Any, _event: int, _detail: int, _o: Any) -> None:
        """On libvirt's event thread: hand the event to the asyncio loop."""
        name = dom.name()
        loop = self._loop
        if loop is None or not name.startswith(self.domain_prefix):
            return
        instance_id = name[len(self.domain_prefix) :]
        loop.call_soon_threadsafe(self._schedule_power_report, instance_id)

    def _schedule_power_report(self, instance_id: str) -> None:
        if self.on_power_change is None:
            return
        task = asyncio.get_running_loop().create_task(self._report_power(instance_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_power(self, instance_id: str) -> None:
        try:
            state = (await self.get_info(instance_id)).power_state
        except InstanceNotFound:
            state = PowerState.NOSTATE
        except DriverError:
            return
        if self.on_power_change is not None:
            self.on_power_change(instance_id, state)


def _conforms(driver: LibvirtDriver) -> ComputeDriver:
    """Never called: makes mypy check LibvirtDriver against the ComputeDriver protocol."""
    return driver
