"""libvirtd away, at the agent's start and midway, through the whole stack: the agent says it is not
ready, its host reports nothing (so no nova-compute appears, and no work is placed there), a
command sent meanwhile waits, and everything carries on when libvirtd is back; nothing is lost.

"Away" without stopping the machine's libvirtd (other tests use it): the cloud's libvirt URI names
a socket path that is a symlink to libvirtd's socket, present or not; midway, libvirtd's admin
interface (virt-admin) also drops the agent's open connection.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import dsn_for
from tests.system.conftest import (
    RunningCloud,
    unique,
)
from tests.system.test_compute_libvirt import (
    LibvirtCloud,
    run_script,
    running_libvirt_cloud,
    virsh,
)

LIBVIRTD_SOCKET = Path("/run/libvirt/libvirt-sock")
ADMIN = ["virt-admin", "-c", "libvirtd:///system"]

pytestmark = pytest.mark.libvirt


@dataclass
class Outage:
    lc: LibvirtCloud
    socket: Path  # the cloud's libvirt socket path: a symlink to libvirtd's, or nothing
    pid: int  # the cloud's process

    def libvirtd_back(self) -> None:
        self.socket.symlink_to(LIBVIRTD_SOCKET)

    def libvirtd_away(self) -> None:
        """No new connection can be made, and the agent's open one is dropped."""
        self.socket.unlink()
        clients = subprocess.run(
            [*ADMIN, "srv-clients-list", "libvirtd"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[2:]
        dropped = 0
        for client_id in (line.split()[0] for line in clients if line.strip()):
            info = subprocess.run(
                [*ADMIN, "client-info", "libvirtd", client_id], capture_output=True, text=True
            ).stdout
            if f"unix_process_id: {self.pid}\n" in info:
                subprocess.run(
                    [*ADMIN, "client-disconnect", "libvirtd", client_id], check=True, timeout=30
                )
                dropped += 1
        assert dropped == 1, f"the cloud (pid {self.pid}) should hold one libvirt connection"

    def readiness(self) -> dict[str, bool]:
        async def read() -> Any:
            conn = await asyncpg.connect(dsn_for(self.lc.cloud.database))
            try:
                return await conn.fetchval(
                    "SELECT readiness FROM services WHERE binary_name = 'aiostack-compute'"
                )
            finally:
                await conn.close()

        value = asyncio.run(read())
        return dict(json.loads(value)) if value else {}

    def compute_services(self) -> list[dict[str, Any]]:
        return list(
            self.lc.cloud.openstack("compute", "service", "list", "--service", "nova-compute")
        )


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.5)


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    run_script("ensure-libvirt.sh")
    socket = tmp_path / "libvirt-sock"  # libvirtd is away: nothing there yet
    (tmp_path / "cloud").mkdir()
    uri = f"qemu+unix:///system?socket={socket}"
    with running_libvirt_cloud(tmp_path / "cloud", "", libvirt_uri=uri) as (lc, pid):
        yield Outage(lc, socket, pid)


def test_libvirtd_away_at_start_and_midway_loses_nothing(outage: Outage, tmp_path: Path) -> None:
    cloud: RunningCloud = outage.lc.cloud
    # At start: the agent runs and heartbeats, but says its hypervisor is not ready and its host
    # never reports, so there is no nova-compute to place work on.
    eventually(lambda: outage.readiness().get("consuming") is True, "the agent heartbeats")
    assert outage.readiness()["hypervisor"] is False
    assert outage.compute_services() == []

    outage.libvirtd_back()
    eventually(lambda: outage.readiness().get("hypervisor") is True, "the agent is ready")
    eventually(
        lambda: [s["State"] for s in outage.compute_services()] == ["up"], "nova-compute is up"
    )
    guest = dict(
        line.split("=", 1) for line in run_script("test-image.sh").splitlines() if "=" in line
    )
    env = cloud.env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    image = run_script("test-image.sh", "--cloud", "aiostack-admin", env=env).split()[-1]
    server = cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.nano", "--nic", "none", "--wait",
        unique("outage"),
    )  # fmt: skip
    sid = server["id"]
    assert server["status"] == "ACTIVE" and guest["MARKER"]

    # Midway: the command waits for libvirtd instead of failing, and runs once it is back.
    outage.libvirtd_away()
    eventually(lambda: outage.readiness().get("hypervisor") is False, "the agent is not ready")
    cloud.openstack("server", "pause", sid)
    time.sleep(3)  # several reconnection attempts
    held = outage.lc.server(sid)
    assert (held["status"], held["OS-EXT-STS:task_state"]) == ("ACTIVE", "pausing"), held
    assert "paused" not in virsh("domstate", outage.lc.prefix + sid)
    outage.libvirtd_back()
    assert outage.lc.wait_status(sid, "PAUSED", timeout=60)["OS-EXT-STS:power_state"] == 3
    eventually(lambda: outage.readiness().get("hypervisor") is True, "the agent is ready again")
    # Held, not failed and retried: retries run out (and dead-letter) after half a minute.
    log = cloud.log_path.read_text().splitlines()
    retried = [line for line in log if '"message.retrying"' in line and '"compute.' in line]
    assert retried == [], retried[:3]

    cloud.openstack("server", "delete", "--wait", sid)
    assert outage.lc.domains() == []
