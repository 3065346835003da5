"""LibvirtDriver against libvirt: its test driver (``test:///default``, in-process, no daemon) for
everything that driver supports, and a real libvirtd (``qemu:///system``, started by
scripts/ensure-libvirt.sh) for a real TCG boot of the test image (scripts/test-image.sh).

Real boots cost ~5 s each: the one real-VM test boots three times in all.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agents.compute.driver import (
    DriverError,
    HypervisorUnavailable,
    InstanceNotFound,
    InstanceSpec,
    PowerState,
)
from agents.compute.drivers.host import image_info
from agents.compute.drivers.image_cache import (
    HttpImageSource,
    ImageCache,
    ImageMeta,
    ImageUnavailable,
    LocalImageSource,
)
from agents.compute.drivers.libvirt import LibvirtDriver
from schemas.compute import FlavorSpec

ROOT = Path(__file__).resolve().parents[2]
TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=128, disk_gb=1)
BIGGER = FlavorSpec(id="2", name="m1.small", vcpus=2, ram_mb=192, disk_gb=2)


# What the firmware looks for in a disk's first sector, and what QEMU looks for in a kernel.
BOOT_SECTOR = bytes(510) + b"\x55\xaa"
FAKE_KERNEL = bytes(0x202) + b"HdrS" + b"not really a kernel"


def qcow2(path: Path, size: str = "16M", *, first_sector: bytes = BOOT_SECTOR) -> Path:
    raw = path.with_suffix(".raw")
    raw.write_bytes(first_sector)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(path)], check=True)
    subprocess.run(["qemu-img", "resize", "-q", str(path), size], check=True)
    raw.unlink()
    return path


@pytest.fixture
def instances_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: the QEMU user (libvirt-qemu) must be able to reach the files.
    path = Path(tempfile.mkdtemp(prefix="aiostack-libvirt-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def images(tmp_path: Path) -> LocalImageSource:
    source = LocalImageSource()
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(FAKE_KERNEL)
    source.add(kernel, ImageMeta("kernel", "aki", "aki"))
    text = tmp_path / "readme"
    text.write_bytes(b"a text file, not a kernel\n" * 100)
    source.add(text, ImageMeta("text", "aki", "aki"))
    source.add(
        qcow2(tmp_path / "textkernel.qcow2"),
        ImageMeta("textkernel", "qcow2", "bare", properties={"kernel_id": "text"}),
    )
    source.add(
        qcow2(tmp_path / "blank.qcow2", first_sector=bytes(512)),
        ImageMeta("blank", "qcow2", "bare"),
    )
    source.add(qcow2(tmp_path / "disk.qcow2"), ImageMeta("disk", "qcow2", "bare"))
    source.add(
        qcow2(tmp_path / "direct.qcow2"),
        ImageMeta("direct", "qcow2", "bare", properties={"kernel_id": "kernel"}),
    )
    source.add(
        qcow2(tmp_path / "badkernel.qcow2"),
        ImageMeta("badkernel", "qcow2", "bare", properties={"kernel_id": "disk"}),
    )
    return source


@pytest.fixture
async def driver(instances_dir: Path, images: LocalImageSource) -> AsyncIterator[LibvirtDriver]:
    drv = LibvirtDriver(
        uri="test:///default",
        instances_dir=instances_dir,
        image_source=images,
        # test:///default is shared by the whole process: a prefix per test keeps them apart.
        domain_prefix=f"t{uuid.uuid4().hex[:8]}-",
        shutdown_timeout_s=1.0,
    )
    yield drv
    for iid in await drv.list_instances():
        await drv.destroy(iid)
    await drv.close()


def spec(image: str = "disk", flavor: FlavorSpec = TINY, iid: str | None = None) -> InstanceSpec:
    iid = iid or str(uuid.uuid4())
    return InstanceSpec(iid, f"vm-{iid[:4]}", flavor, image)


async def test_spawn_runs_and_is_idempotent(driver: LibvirtDriver) -> None:
    s = spec()
    info = await driver.spawn(s)
    assert (info.power_state, info.vcpus, info.ram_mb) == (PowerState.RUNNING, 1, 128)
    assert await driver.spawn(s) == info
    assert await driver.list_instances() == [s.instance_id]
    disk = driver.files(s.instance_id).disk
    assert (await image_info(disk))["virtual-size"] == 1 << 30  # grown to the flavor's 1 GiB
    assert (await image_info(disk))["backing-filename"] == str(driver.images.path_of("disk"))


async def test_direct_kernel_boot_copies_the_kernel(driver: LibvirtDriver) -> None:
    s = spec("direct")
    await driver.spawn(s)
    assert driver.files(s.instance_id).kernel.read_bytes() == FAKE_KERNEL


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("kernel", "not bootable"),
        ("badkernel", "not a kernel"),
        ("nope", "not found"),
        ("textkernel", "its kernel text is not a bootable kernel"),
        ("blank", "names no kernel .* no boot sector"),
    ],
)
async def test_unbootable_image_fails_and_leaves_nothing(
    driver: LibvirtDriver, image: str, why: str
) -> None:
    s = spec(image)
    with pytest.raises(DriverError, match=why):
        await driver.spawn(s)
    assert await driver.list_instances() == []
    assert not driver.files(s.instance_id).root.exists()


async def test_destroy_removes_domain_and_files_and_is_idempotent(driver: LibvirtDriver) -> None:
    s = spec()
    await driver.spawn(s)
    await driver.suspend(s.instance_id)  # a managed save must not block the undefine
    await driver.destroy(s.instance_id)
    await driver.destroy(s.instance_id)
    assert await driver.list_instances() == []
    assert not driver.files(s.instance_id).root.exists()
    with pytest.raises(InstanceNotFound):
        await driver.get_info(s.instance_id)


async def test_power_cycle_pause_suspend(driver: LibvirtDriver) -> None:
    iid = (await driver.spawn(spec())).instance_id

    async def state() -> PowerState:
        return (await driver.get_info(iid)).power_state

    await driver.power_off(iid)
    assert await state() == PowerState.SHUTDOWN
    await driver.power_off(iid)
    await driver.power_on(iid)
    assert await state() == PowerState.RUNNING
    await driver.pause(iid)
    await driver.pause(iid)
    assert await state() == PowerState.PAUSED
    with pytest.raises(DriverError, match="paused"):
        await driver.resume(iid)
    await driver.unpause(iid)
    assert await state() == PowerState.RUNNING
    await driver.suspend(iid)
    assert await state() == PowerState.SUSPENDED
    await driver.resume(iid)
    assert await state() == PowerState.RUNNING
    for hard in (False, True):
        await driver.reboot(iid, hard=hard)
        assert await state() == PowerState.RUNNING
    await driver.pause(iid)
    await driver.reboot(iid)  # a paused instance runs afterwards
    assert await state() == PowerState.RUNNING


async def test_unknown_instance(driver: LibvirtDriver) -> None:
    for op in (
        driver.power_on,
        driver.power_off,
        driver.pause,
        driver.get_info,
        driver.vnc_console,
    ):
        with pytest.raises(InstanceNotFound):
            await op("missing")
    with pytest.raises(InstanceNotFound):
        await driver.console_output("missing")


async def test_resize_then_revert_restores_flavor_and_disk(driver: LibvirtDriver) -> None:
    s = spec()
    await driver.spawn(s)
    grown = spec(flavor=BIGGER, iid=s.instance_id)
    info = await driver.resize(grown, power_on=True)
    assert (info.power_state, info.vcpus, info.ram_mb) == (PowerState.RUNNING, 2, 192)
    disk = driver.files(s.instance_id).disk
    assert (await image_info(disk))["virtual-size"] == 2 << 30
    info = await driver.revert_resize(s.instance_id, TINY)
    assert (info.power_state, info.vcpus, info.ram_mb) == (PowerState.RUNNING, 1, 128)
    assert (await image_info(disk))["virtual-size"] == 1 << 30
    assert not driver.files(s.instance_id).disk_backup.exists()


async def test_resize_confirm_drops_the_backup_and_keeps_power_off(driver: LibvirtDriver) -> None:
    s = spec()
    await driver.spawn(s)
    info = await driver.resize(spec(flavor=BIGGER, iid=s.instance_id), power_on=False)
    assert info.power_state == PowerState.SHUTDOWN and info.vcpus == 2
    assert driver.files(s.instance_id).disk_backup.exists()
    await driver.confirm_resize(s.instance_id)
    assert not driver.files(s.instance_id).disk_backup.exists()


async def test_resize_to_this_host_spawns(driver: LibvirtDriver) -> None:
    info = await driver.resize(spec(flavor=BIGGER), power_on=False)
    assert (info.power_state, info.vcpus) == (PowerState.SHUTDOWN, 2)


async def test_rebuild_recreates_the_disk_from_the_new_image(driver: LibvirtDriver) -> None:
    s = spec()
    await driver.spawn(s)
    info = await driver.rebuild(spec("direct", iid=s.instance_id), power_on=False)
    assert info.power_state == PowerState.SHUTDOWN
    backing = (await image_info(driver.files(s.instance_id).disk))["backing-filename"]
    assert backing == str(driver.images.path_of("direct"))
    with pytest.raises(InstanceNotFound):
        await driver.rebuild(spec(), power_on=True)


async def test_snapshot_staged_read_and_discarded(driver: LibvirtDriver) -> None:
    iid = (await driver.spawn(spec())).instance_id
    snap = await driver.snapshot(iid, "snap-1")
    assert (snap.disk_format, snap.container_format) == ("qcow2", "bare")
    assert await driver.snapshot(iid, "snap-1") == snap
    data = b"".join([chunk async for chunk in driver.read_snapshot("snap-1")])
    assert len(data) == snap.size and data[:4] == b"QFI\xfb"
    assert (await driver.get_info(iid)).power_state == PowerState.RUNNING  # resumed after copy
    await driver.discard_snapshot("snap-1")
    with pytest.raises(DriverError):
        [chunk async for chunk in driver.read_snapshot("snap-1")]


async def test_console_output_tail(driver: LibvirtDriver) -> None:
    iid = (await driver.spawn(spec())).instance_id
    assert await driver.console_output(iid) == ""
    driver.files(iid).console_log.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    assert await driver.console_output(iid) == "one\ntwo\nthree"
    assert await driver.console_output(iid, 2) == "two\nthree"
    assert await driver.console_output(iid, 0) == ""


async def test_host_resources_are_the_hosts(driver: LibvirtDriver) -> None:
    res = await driver.host_resources()
    assert res.hypervisor_type == "test" and res.vcpus > 0 and res.ram_mb > 0
    assert res.disk_gb == shutil.disk_usage(driver.instances_dir).total >> 30


async def test_lifecycle_events_reach_the_loop(driver: LibvirtDriver) -> None:
    seen: asyncio.Queue[tuple[str, PowerState]] = asyncio.Queue()
    driver.on_power_change = lambda iid, state: seen.put_nowait((iid, state))
    iid = (await driver.spawn(spec())).instance_id
    await driver.pause(iid)
    async with asyncio.timeout(10):
        while (event := await seen.get()) != (iid, PowerState.PAUSED):
            pass
    assert event == (iid, PowerState.PAUSED)


async def test_libvirtd_unreachable_is_hypervisor_unavailable(
    instances_dir: Path, images: LocalImageSource
) -> None:
    drv = LibvirtDriver(
        uri="qemu+unix:///system?socket=/nonexistent/libvirt-sock",
        instances_dir=instances_dir,
        image_source=images,
    )
    for attempt in (drv.list_instances, drv.host_resources):
        with pytest.raises(HypervisorUnavailable, match="nonexistent"):
            await attempt()
    with pytest.raises(HypervisorUnavailable):
        await drv.spawn(spec())
    assert os.listdir(instances_dir) == []
    await drv.close()


# -- a real libvirtd and a real TCG boot ---------------------------------------------------------


@pytest.fixture(scope="module")
def real_libvirt() -> dict[str, str]:
    """Start libvirtd if needed and build the test image; its files (KERNEL, RAMDISK, DISK, ...)."""
    for script in ("ensure-libvirt.sh", "test-image.sh"):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            pytest.fail(f"scripts/{script} failed:\n{done.stderr}")
    return dict(
        line.split("=", 1) for line in done.stdout.splitlines() if "=" in line
    )  # test-image.sh's output


async def wait_for(driver: LibvirtDriver, iid: str, text: str, timeout: float = 120) -> str:
    """The console log once it shows ``text`` (polled: the log is a file virtlogd writes)."""
    async with asyncio.timeout(timeout):
        while True:
            out = await driver.console_output(iid)
            if text in out:
                return out
            await asyncio.sleep(0.2)


@pytest.mark.libvirt
async def test_real_boot_console_vnc_power_and_cleanup(
    real_libvirt: dict[str, str], instances_dir: Path
) -> None:
    guest = real_libvirt
    cmdline = guest["CMDLINE"].strip("'")
    source = LocalImageSource()
    source.add(Path(guest["KERNEL"]), ImageMeta("k", "aki", "aki"))
    source.add(Path(guest["RAMDISK"]), ImageMeta("r", "ari", "ari"))
    props = {"kernel_id": "k", "ramdisk_id": "r", "os_command_line": cmdline}
    source.add(Path(guest["DISK"]), ImageMeta("guest", "qcow2", "bare", properties=props))
    changes: asyncio.Queue[tuple[str, PowerState]] = asyncio.Queue()
    driver = LibvirtDriver(
        uri="qemu:///system",
        instances_dir=instances_dir,
        image_source=source,
        virt_type="auto",
        domain_prefix=f"itest{os.getpid()}-",  # not "aiostack-": a cloud here would adopt it
        shutdown_timeout_s=30,
        on_power_change=lambda iid, state: changes.put_nowait((iid, state)),
    )
    s = spec("guest")
    iid = s.instance_id
    try:
        assert driver.virt_type in ("kvm", "qemu")
        assert (await driver.spawn(s)).power_state == PowerState.RUNNING
        await wait_for(driver, iid, guest["MARKER"])
        out = await wait_for(driver, iid, "AIOSTACK-TEST-GUEST-READY")
        assert "disks: vda" in out

        vnc = await driver.vnc_console(iid)
        assert vnc.host == "127.0.0.1"
        reader, writer = await asyncio.open_connection(vnc.host, vnc.port)
        assert (await asyncio.wait_for(reader.readexactly(12), 10)).startswith(b"RFB ")
        writer.close()

        # Killed behind our back: the lifecycle event reports it.
        dom = await driver.domain(iid)
        await driver.hard_stop(dom)
        async with asyncio.timeout(30):
            while await changes.get() != (iid, PowerState.SHUTDOWN):
                pass

        await driver.power_on(iid)  # boot 2
        out = await wait_for(driver, iid, "AIOSTACK-TEST-GUEST-READY")
        assert out.count(guest["MARKER"]) == 1  # the log restarts with each boot
        await driver.reboot(iid)  # boot 3: clean (the guest powers off on ACPI), then start
        await wait_for(driver, iid, "AIOSTACK-TEST-GUEST-READY")

        # No boots: memory states and a snapshot of the running guest's disk.
        await driver.pause(iid)
        assert (await driver.get_info(iid)).power_state == PowerState.PAUSED
        await driver.unpause(iid)
        await driver.suspend(iid)
        assert (await driver.get_info(iid)).power_state == PowerState.SUSPENDED
        await driver.resume(iid)
        assert (await driver.get_info(iid)).power_state == PowerState.RUNNING
        snap = await driver.snapshot(iid, f"snap-{iid}")
        staged = driver.snapshots_dir / snap.image_id
        assert (await image_info(staged))["format"] == "qcow2"
        assert "backing-filename" not in await image_info(staged)  # standalone
        await driver.discard_snapshot(snap.image_id)

        await driver.power_off(iid)  # ACPI again: the guest obliges at once
        assert (await driver.get_info(iid)).power_state == PowerState.SHUTDOWN
        with pytest.raises(DriverError, match="shutdown: no VNC"):
            await driver.vnc_console(iid)
    finally:
        await driver.destroy(iid)
        assert iid not in await driver.list_instances()
        assert not driver.files(iid).root.exists()  # disk, overlay, kernel copies, console log
        await driver.close()


# -- images over HTTP ----------------------------------------------------------------------------


@pytest.fixture
async def image_api() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for the image API: image ``good`` (checksum right), ``bad`` (wrong), tokens seen."""
    from aiohttp import web

    data = b"image bytes " * 1000
    records = {
        "good": {"id": "good", "status": "active", "disk_format": "qcow2", "kernel_id": "k"},
        "bad": {"id": "bad", "status": "active", "disk_format": "qcow2", "checksum": "0" * 32},
    }
    records["good"]["checksum"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
    tokens: list[str] = []

    async def show(request: web.Request) -> web.Response:
        tokens.append(request.headers.get("X-Auth-Token", ""))
        if tokens[-1] == "expired":
            return web.json_response({}, status=401)
        record = records.get(request.match_info["id"])
        return web.json_response(record) if record else web.json_response({}, status=404)

    async def file(request: web.Request) -> web.Response:
        return web.Response(body=data)

    app = web.Application()
    app.router.add_get("/image/v2/images/{id}", show)
    app.router.add_get("/image/v2/images/{id}/file", file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/image/v2", tokens
    await runner.cleanup()


async def test_http_image_source_and_cache(
    image_api: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, tokens = image_api

    class Auth:
        current = "expired"

        async def image_url(self) -> str:
            return url

        async def token(self) -> str:
            return self.current

        def forget(self) -> None:
            self.current = "tok-1"

    cache = ImageCache(tmp_path / "_base", HttpImageSource(Auth()))
    meta = await cache.source.describe("good")
    # The refused token was renewed and the request tried again.
    assert meta.properties == {"kernel_id": "k"} and tokens == ["expired", "tok-1"]
    path = await cache.fetch(meta)
    assert path.read_bytes() == b"image bytes " * 1000
    assert await cache.fetch(meta) == path  # cached: downloaded once
    with pytest.raises(ImageUnavailable, match="checksum"):
        await cache.fetch(await cache.source.describe("bad"))
    assert sorted(p.name for p in (tmp_path / "_base").iterdir()) == ["good"]  # no partial left
    with pytest.raises(ImageUnavailable, match="404"):
        await cache.source.describe("missing")
    assert await cache.prune(in_use=set()) == []  # just fetched: kept
    assert await cache.prune(in_use={"good"}, min_age_s=0) == []
    assert await cache.prune(in_use=set(), min_age_s=0) == ["good"]


async def test_prune_keeps_the_bases_of_instances(driver: LibvirtDriver) -> None:
    await driver.spawn(spec())
    await driver.spawn(spec("direct"))
    kept = sorted(p.name for p in driver.images.directory.iterdir())
    assert kept == ["direct", "disk", "kernel"]
    for path in driver.images.directory.iterdir():
        os.utime(path, (0, 0))  # long unused
    assert await driver.prune_image_cache() == ["kernel"]  # copied into its instance
