"""The compute agent over a LibvirtDriver whose libvirtd is away: it says it is not ready, sends no
host report, holds its commands, and carries on once libvirtd answers (nothing failed, nothing lost).
And the choice of driver on a machine where libvirtd runs.

"Away" and "back" without stopping the machine's libvirtd (other tests use it): the agent's URI
names a socket path that is missing at first and then becomes a symlink to libvirtd's socket.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from agents.compute.agent import ComputeAgent
from agents.compute.choice import DriverUnavailable
from agents.compute.drivers.image_cache import LocalImageSource
from agents.compute.drivers.libvirt import LibvirtDriver
from agents.compute.fake import FakeDriver
from cloud.config import Settings
from cloud.node import make_compute
from cloud.runtime.actor import Context
from cloud.runtime.clock import SystemClock
from cloud.runtime.consumer import PublishAfterSuccess
from schemas import Message
from schemas.codec import decode
from schemas.compute import DestroyInstance, InstanceDestroyed
from schemas.compute_hosts import HostStateReported

ROOT = Path(__file__).resolve().parents[2]
LIBVIRTD_SOCKET = Path("/run/libvirt/libvirt-sock")

pytestmark = pytest.mark.libvirt


@pytest.fixture(scope="module")
def libvirtd() -> Path:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-libvirt.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/ensure-libvirt.sh failed:\n{done.stderr}")
    assert LIBVIRTD_SOCKET.is_socket(), f"libvirtd runs but {LIBVIRTD_SOCKET} is missing"
    return LIBVIRTD_SOCKET


@pytest.fixture
async def away(tmp_path: Path) -> AsyncIterator[tuple[ComputeAgent, Path]]:
    socket = tmp_path / "libvirt-sock"  # nothing there yet
    instances = Path(tempfile.mkdtemp(prefix="aiostack-agent-", dir="/var/tmp"))
    driver = LibvirtDriver(
        uri=f"qemu+unix:///system?socket={socket}",
        instances_dir=instances,
        image_source=LocalImageSource(),
        domain_prefix="agenttest-",
    )
    agent = ComputeAgent("away", driver)
    yield agent, socket
    await agent.close()
    shutil.rmtree(instances)


def sent(buffer: PublishAfterSuccess) -> list[Message]:
    return [decode(m.headers["kind"], int(m.headers["v"]), m.body) for m in buffer.messages]


def context() -> tuple[Context, PublishAfterSuccess]:
    clock = SystemClock()
    buffer = PublishAfterSuccess("test", clock, None)
    return Context(None, buffer, clock, structlog.get_logger(), None), buffer


async def test_an_agent_without_libvirtd_waits_for_it_and_loses_nothing(
    libvirtd: Path, away: tuple[ComputeAgent, Path]
) -> None:
    agent, socket = away
    ctx, emitted = context()

    await agent.tick(ctx)
    assert emitted.messages == []  # no report: the scheduler must not trust this host
    assert agent.readiness()["hypervisor"] is False

    command = DestroyInstance(instance_id="never-existed")
    handler = agent.handler_for(command)
    assert handler is not None
    held = asyncio.create_task(handler(command, ctx))
    await asyncio.sleep(1.5)  # a few reconnection attempts
    assert not held.done(), "the command was handled (or failed) without a hypervisor"
    assert emitted.messages == []

    socket.symlink_to(libvirtd)  # libvirtd is back
    await asyncio.wait_for(held, 30)
    assert [type(m) for m in sent(emitted)] == [InstanceDestroyed]
    assert agent.readiness()["hypervisor"] is True

    await agent.tick(ctx)
    report = sent(emitted)[-1]
    assert isinstance(report, HostStateReported) and report.host == "away"
    assert report.vcpus > 0 and report.ram_mb > 0


def test_auto_keeps_the_fake_driver_when_the_instances_dir_is_unusable(
    libvirtd: Path, tmp_path: Path
) -> None:
    private = tmp_path / "private"  # pytest's tmp is 0700: the QEMU user cannot get in
    private.mkdir(mode=0o700)
    settings = Settings(
        compute_driver="auto", libvirt_uri="qemu:///system", instances_dir=private / "instances"
    )
    fleet = make_compute(settings)
    assert isinstance(fleet.agents[0].driver, FakeDriver)
    with pytest.raises(DriverUnavailable, match="not searchable by other users"):
        make_compute(settings.model_copy(update={"compute_driver": "libvirt"}))
