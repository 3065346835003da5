"""Real guests through the real clients: ``aiostack up`` with the libvirt driver on the machine's
libvirtd (started by scripts/ensure-libvirt.sh), the test guest of scripts/test-image.sh uploaded
with ``--cloud``, and ``openstack`` driving it: create, console log, noVNC console through the
proxy, a domain killed behind our back, start, reboot, pause, suspend, resize, snapshot, stop,
delete; and a domain of ours that nobody asked for (reported as an orphan, kept).

Each boot costs ~5 s under TCG: the one guest boots four times in all. The cloud has its own
instances directory and domain prefix, so other clouds on this libvirtd are not its business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import dsn_for
from tests.system.conftest import (
    RunningCloud,
    private_cloud,
    unique,
)
from tests.system.test_compute_consoles import first_bytes, websocket_url

ROOT = Path(__file__).resolve().parents[2]
READY = "AIOSTACK-TEST-GUEST-READY"
QEMU_SYSTEM = "qemu:///system"

pytestmark = pytest.mark.libvirt


@dataclass
class LibvirtCloud:
    cloud: RunningCloud
    instances: Path
    prefix: str
    marker: str

    def domains(self) -> list[str]:
        """This cloud's libvirt domains, running or not."""
        out = virsh("list", "--all", "--name")
        return [n for n in out.split() if n.startswith(self.prefix)]

    def server(self, server_id: str) -> dict[str, Any]:
        return dict(self.cloud.openstack("server", "show", server_id))

    def wait_status(self, server_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            server = self.server(server_id)
            if server["status"] == status and not server.get("OS-EXT-STS:task_state"):
                return server
            assert server["status"] != "ERROR", server.get("fault")
            assert time.monotonic() < deadline, f"{server['status']}, not {status}"
            time.sleep(0.5)

    def console_log(self, server_id: str, *options: str) -> str:
        """``openstack console log show`` (a command with no -f json)."""
        done = self.cloud.run_cli("console", "log", "show", *options, server_id)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def wait_console(self, server_id: str, text: str, timeout: float = 120) -> str:
        """``openstack console log show`` once it shows ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.console_log(server_id)
            if text in out:
                return out
            assert time.monotonic() < deadline, f"no {text!r} on the console:\n{out[-2000:]}"
            time.sleep(0.5)


def virsh(*args: str) -> str:
    done = subprocess.run(
        ["virsh", "-c", QEMU_SYSTEM, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/{name} failed:\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def libvirt_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LibvirtCloud]:
    run_script("ensure-libvirt.sh")
    guest = dict(
        line.split("=", 1) for line in run_script("test-image.sh").splitlines() if "=" in line
    )
    tmp = tmp_path_factory.mktemp("libvirt-cloud")
    with running_libvirt_cloud(tmp, guest["MARKER"], libvirt_shutdown_timeout_s="30") as (lc, _):
        yield lc


@contextlib.contextmanager
def running_libvirt_cloud(
    tmp: Path, marker: str, **settings: str
) -> Iterator[tuple[LibvirtCloud, int]]:
    """``aiostack up`` with the libvirt driver, its own instances directory and domain prefix;
    the cloud and its process id. Whatever a failed test left (domains, files) goes with it."""
    # Not under pytest's private tmp: the QEMU user must reach the disks.
    instances = Path(tempfile.mkdtemp(prefix="aiostack-system-", dir="/var/tmp"))
    instances.chmod(0o755)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    try:
        with private_cloud(
            tmp,
            compute_driver="libvirt",
            instances_dir=str(instances),
            libvirt_domain_prefix=prefix,
            compute_report_interval_s="1",
            **settings,
        ) as (cloud, proc):
            lc = LibvirtCloud(cloud, instances, prefix, marker)
            try:
                yield lc, proc.pid
            finally:
                for name in lc.domains():  # never leave a guest running
                    subprocess.run(["virsh", "-c", QEMU_SYSTEM, "destroy", name], check=False)
                    subprocess.run(
                        ["virsh", "-c", QEMU_SYSTEM, "undefine", "--managed-save", name],
                        check=False,
                    )
    finally:
        shutil.rmtree(instances, ignore_errors=True)


@pytest.fixture(scope="module")
def guest_image(libvirt_cloud: LibvirtCloud) -> str:
    """The test guest (kernel, ramdisk, disk with kernel_id/ramdisk_id) uploaded with --cloud."""
    env = libvirt_cloud.cloud.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # the openstack CLI
    out = run_script("test-image.sh", "--cloud", "aiostack-admin", env=env)
    image_id = out.strip().splitlines()[-1]
    image = libvirt_cloud.cloud.openstack("image", "show", image_id)
    assert image["status"] == "active" and image["properties"]["kernel_id"], image
    return image_id


def test_a_real_guest_through_the_openstack_cli(
    libvirt_cloud: LibvirtCloud, guest_image: str
) -> None:
    lc, cloud = libvirt_cloud, libvirt_cloud.cloud
    # The host's real resources (2.87: the last microversion that shows them).
    hypervisors = cloud.sdk().compute.get("/os-hypervisors/detail", microversion="2.87").json()
    (hypervisor,) = hypervisors["hypervisors"]
    assert hypervisor["hypervisor_type"] == "QEMU" and hypervisor["vcpus"] == os.cpu_count()
    assert hypervisor["memory_mb"] > 1024 and hypervisor["local_gb"] > 0

    created = cloud.openstack(
        "server", "create", "--image", guest_image, "--flavor", "m1.nano", "--nic", "none",
        "--wait", unique("guest"),
    )  # fmt: skip
    assert created["status"] == "ACTIVE", created
    sid = created["id"]
    assert lc.domains() == [lc.prefix + sid]

    out = lc.wait_console(sid, READY)
    assert lc.marker in out and "disks: vda" in out
    tail = lc.console_log(sid, "--lines", "2")
    assert 0 < len(tail.strip().splitlines()) <= 2
    assert lc.console_log(sid).rstrip().endswith(tail.rstrip())

    shown = cloud.openstack("console", "url", "show", "--novnc", sid)
    ws_url = websocket_url(shown["url"])
    banner = first_bytes(ws_url)
    assert isinstance(banner, bytes) and banner.startswith(b"RFB 003."), banner
    assert first_bytes(ws_url) == 403  # the token worked once

    # Killed behind our back: libvirt's event makes the host report early; Nova's sync stops it.
    virsh("destroy", lc.prefix + sid)
    stopped = lc.wait_status(sid, "SHUTOFF", timeout=30)
    assert stopped["OS-EXT-STS:power_state"] == 4  # Shutdown

    cloud.openstack("server", "start", sid)  # boot 2
    lc.wait_status(sid, "ACTIVE")
    lc.wait_console(sid, READY)
    cloud.openstack("server", "reboot", "--wait", sid)  # boot 3: ACPI off (the guest obliges), on
    out = lc.wait_console(sid, READY)
    assert out.count(lc.marker) == 1  # the log restarts with each boot

    # Memory states: no boots.
    cloud.openstack("server", "pause", sid)
    lc.wait_status(sid, "PAUSED")
    assert virsh("domstate", lc.prefix + sid).strip() == "paused"
    cloud.openstack("server", "unpause", sid)
    lc.wait_status(sid, "ACTIVE")
    cloud.openstack("server", "suspend", sid)  # managed save: memory to disk, domain off
    lc.wait_status(sid, "SUSPENDED")
    assert virsh("domstate", lc.prefix + sid).strip() == "shut off"
    cloud.openstack("server", "resume", sid)
    lc.wait_status(sid, "ACTIVE")
    assert virsh("domstate", lc.prefix + sid).strip() == "running"

    # Cold resize to a bigger flavor (boot 4): the domain gets the new flavor's memory.
    cloud.openstack("server", "resize", "--flavor", "m1.tiny", "--wait", sid)
    assert lc.wait_status(sid, "VERIFY_RESIZE")["flavor"]["name"] == "m1.tiny"
    cloud.openstack("server", "resize", "confirm", sid)
    lc.wait_status(sid, "ACTIVE")
    assert "512 MiB" in virsh("dominfo", lc.prefix + sid).replace("524288 KiB", "512 MiB")

    snapshot = cloud.openstack("server", "image", "create", "--wait", "--name", unique("snap"), sid)
    image = cloud.openstack("image", "show", snapshot["id"])
    assert image["status"] == "active" and image["disk_format"] == "qcow2" and image["size"] > 0
    assert image["properties"]["image_type"] == "snapshot"
    lc.wait_status(sid, "ACTIVE")

    cloud.openstack("server", "stop", sid)
    assert lc.wait_status(sid, "SHUTOFF")["OS-EXT-STS:power_state"] == 4

    cloud.openstack("server", "delete", "--wait", sid)
    assert lc.domains() == []
    assert not (lc.instances / sid).exists()  # disk overlay, kernel copies, console log
    leftovers = {p.name for p in lc.instances.iterdir()} - {"_base", "_snapshots"}
    assert leftovers == set(), leftovers
    assert not any((lc.instances / "_snapshots").glob("*")), "a staged snapshot was left"
    cloud.openstack("image", "delete", snapshot["id"])


def test_an_image_without_a_bootable_kernel_ends_in_error_saying_why(
    libvirt_cloud: LibvirtCloud, guest_image: str, tmp_path: Path
) -> None:
    cloud = libvirt_cloud.cloud
    text = tmp_path / "not-a-kernel"
    text.write_text("this is a text file, not a kernel\n" * 50)
    kernel = cloud.openstack(
        "image", "create", "--file", str(text), "--disk-format", "aki", "--container-format",
        "aki", unique("kernel"),
    )  # fmt: skip
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    image = cloud.openstack(
        "image", "create", "--file", str(disk), "--disk-format", "raw", "--container-format",
        "bare", "--property", f"kernel_id={kernel['id']}", unique("unbootable"),
    )  # fmt: skip
    failed = cloud.run_cli(
        "server", "create", "--image", image["id"], "--flavor", "m1.nano", "--nic", "none",
        "--wait", unique("doomed"),
    )  # fmt: skip
    assert failed.returncode != 0
    server = cloud.openstack("server", "list", "--name", "doomed", "--long")
    assert server and server[0]["Status"] == "ERROR"
    fault = libvirt_cloud.server(server[0]["ID"])["fault"]
    assert f"its kernel {kernel['id']} is not a bootable kernel" in fault["message"], fault
    assert libvirt_cloud.domains() == []  # nothing half-built
    assert not (libvirt_cloud.instances / server[0]["ID"]).exists()
    cloud.openstack("server", "delete", "--wait", server[0]["ID"])


def test_a_domain_nobody_asked_for_is_reported_not_destroyed(libvirt_cloud: LibvirtCloud) -> None:
    stranger = str(uuid.uuid4())
    name = libvirt_cloud.prefix + stranger
    xml = Path(tempfile.mkstemp(suffix=".xml")[1])
    xml.write_text(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>16</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    virsh("define", str(xml))  # defined, never started: nothing to boot
    xml.unlink()
    try:
        deadline = time.monotonic() + 30
        while not (events := orphan_events(libvirt_cloud.cloud, stranger)):
            assert time.monotonic() < deadline, "the unknown domain was never reported"
            time.sleep(0.5)
        assert events[0] == {"instance_id": stranger, "reason": "unknown", "destroyed": False}
        assert name in libvirt_cloud.domains()  # reconcile_destroy_orphans is off: kept
    finally:
        virsh("undefine", name)


def orphan_events(cloud: RunningCloud, instance_id: str) -> list[dict[str, Any]]:
    async def read() -> list[Any]:
        conn = await asyncpg.connect(dsn_for(cloud.database))
        try:
            return await conn.fetch(
                """SELECT body FROM events WHERE kind = 'compute.host.instance_orphaned'
                   AND body->>'instance_id' = $1""",
                instance_id,
            )
        finally:
            await conn.close()

    found = []
    for row in asyncio.run(read()):
        body = json.loads(row["body"]) if isinstance(row["body"], str) else dict(row["body"])
        found.append({k: body.get(k) for k in ("instance_id", "reason", "destroyed")})
    return found
