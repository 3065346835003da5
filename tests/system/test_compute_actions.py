"""Server actions through the running cloud with the real ``openstack`` CLI (and raw API calls for
status codes): reboot, pause/unpause, suspend/resume, resize + confirm/revert, rebuild."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.system.conftest import ADMIN, DEMO, RunningCloud, unique


def boot(cloud: RunningCloud, image: str) -> str:
    """An ACTIVE m1.tiny server (waits for the compute host's first report if need be)."""
    deadline = time.monotonic() + 60
    while True:
        proc = cloud.run_cli(
            "server", "create", "--image", image, "--flavor", "m1.tiny", "--wait",
            "-f", "json", unique("vm"),
        )  # fmt: skip
        if proc.returncode == 0:
            return str(json.loads(proc.stdout)["id"])
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(1)


@pytest.fixture(scope="module")
def server(cloud: RunningCloud, image: str) -> Iterator[str]:
    """One server the lifecycle tests of this module take through their actions."""
    server_id = boot(cloud, image)
    yield server_id
    cloud.run_cli("server", "delete", "--wait", server_id)


@pytest.fixture
def fresh(cloud: RunningCloud, image: str) -> Iterator[str]:
    """A server of its own (m1.tiny), for a test that changes its flavor."""
    server_id = boot(cloud, image)
    yield server_id
    cloud.run_cli("server", "delete", "--wait", server_id)


def show(cloud: RunningCloud, server_id: str, microversion: str = "2.1") -> dict[str, Any]:
    got = cloud.sdk().compute.get(f"/servers/{server_id}", microversion=microversion)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()["server"]
    return body


def wait_status(cloud: RunningCloud, server_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = show(cloud, server_id)
        if got["status"] == status and got["OS-EXT-STS:task_state"] is None:
            return
        assert time.monotonic() < deadline, f"still {got['status']}, not {status}"
        time.sleep(0.2)


def act(
    cloud: RunningCloud,
    server_id: str,
    body: dict[str, Any],
    *,
    as_: str = ADMIN,
    microversion: str = "2.1",
) -> Any:
    return cloud.sdk(as_).compute.post(
        f"/servers/{server_id}/action", json=body, microversion=microversion
    )


def test_reboot_soft_and_hard_wait_for_active(cloud: RunningCloud, server: str) -> None:
    cloud.openstack("server", "reboot", "--wait", server)
    got = show(cloud, server)
    assert (got["status"], got["OS-EXT-STS:vm_state"]) == ("ACTIVE", "active")
    cloud.openstack("server", "reboot", "--hard", "--wait", server)
    got = show(cloud, server)
    assert (got["status"], got["OS-EXT-STS:power_state"]) == ("ACTIVE", 1)


def test_pause_unpause_suspend_resume(cloud: RunningCloud, server: str) -> None:
    cloud.openstack("server", "pause", server)
    wait_status(cloud, server, "PAUSED")
    got = show(cloud, server)
    assert (got["OS-EXT-STS:vm_state"], got["OS-EXT-STS:power_state"]) == ("paused", 3)
    assert f"Cannot 'pause' instance {server} while it is in vm_state paused" in cloud.fails(
        "server", "pause", server
    )
    cloud.openstack("server", "unpause", server)
    wait_status(cloud, server, "ACTIVE")

    cloud.openstack("server", "suspend", server)
    wait_status(cloud, server, "SUSPENDED")
    assert show(cloud, server)["OS-EXT-STS:power_state"] == 7
    assert "Cannot 'unpause'" in cloud.fails("server", "unpause", server)
    cloud.openstack("server", "resume", server)
    wait_status(cloud, server, "ACTIVE")
    assert "Cannot 'resume'" in cloud.fails("server", "resume", server)


def test_resize_confirm_and_revert(cloud: RunningCloud, fresh: str) -> None:
    server = fresh
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", server)
    got = show(cloud, server, "2.47")
    assert (got["status"], got["OS-EXT-STS:vm_state"]) == ("VERIFY_RESIZE", "resized")
    assert got["flavor"]["original_name"] == "m1.small"
    # While VERIFY_RESIZE, only confirm/revert (and a few others) are allowed.
    assert "Cannot 'pause'" in cloud.fails("server", "pause", server)
    cloud.openstack("server", "resize", "confirm", server)
    wait_status(cloud, server, "ACTIVE")
    assert show(cloud, server, "2.47")["flavor"]["original_name"] == "m1.small"

    cloud.openstack("server", "resize", "--flavor", "m1.medium", "--wait", server)
    wait_status(cloud, server, "VERIFY_RESIZE")
    cloud.openstack("server", "resize", "revert", server)
    wait_status(cloud, server, "ACTIVE")
    assert show(cloud, server, "2.47")["flavor"]["original_name"] == "m1.small"


def test_resize_refusals(cloud: RunningCloud, fresh: str) -> None:
    server = fresh
    same = act(cloud, server, {"resize": {"flavorRef": "1"}})  # it is m1.tiny already
    assert same.status_code == 400 and "must change flavor" in same.text
    unknown = act(cloud, server, {"resize": {"flavorRef": "no-such-flavor"}})
    assert unknown.status_code == 400, unknown.text
    assert act(cloud, server, {"resize": {"flavorRef": "0"}}).status_code == 202  # m1.nano
    wait_status(cloud, server, "VERIFY_RESIZE")
    act(cloud, server, {"confirmResize": None})
    wait_status(cloud, server, "ACTIVE")
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", server)
    cloud.openstack("server", "resize", "confirm", server)
    wait_status(cloud, server, "ACTIVE")
    smaller = act(cloud, server, {"resize": {"flavorRef": "1"}})  # m1.tiny: 1 GB < 20 GB
    assert smaller.status_code == 400 and "disk down" in smaller.text
    assert act(cloud, server, {"resize": {"flavorRef": True}}).status_code == 400
    bad = act(cloud, server, {"resize": {"flavorRef": "3", "color": "red"}})
    assert bad.status_code == 400
    not_resized = act(cloud, server, {"confirmResize": None})
    assert not_resized.status_code == 409, not_resized.text
    missing = act(cloud, str(uuid.uuid4()), {"resize": {"flavorRef": "3"}})
    assert missing.status_code == 404
    assert act(cloud, "not-a-uuid", {"revertResize": None}).status_code == 404
    assert show(cloud, server)["status"] == "ACTIVE"


def test_rebuild_with_the_cli_and_per_microversion(
    cloud: RunningCloud, server: str, image: str
) -> None:
    cloud.openstack("server", "rebuild", "--image", image, "--wait", server)
    wait_status(cloud, server, "ACTIVE")

    name = unique("rebuilt")
    body = {"rebuild": {"imageRef": image, "name": name, "description": "again"}}
    answer = act(cloud, server, body, microversion="2.19")
    assert answer.status_code == 202, answer.text
    rebuilt = answer.json()["server"]
    assert rebuilt["status"] == "REBUILD" and rebuilt["name"] == name
    assert rebuilt["description"] == "again" and rebuilt["adminPass"]
    wait_status(cloud, server, "ACTIVE")
    assert show(cloud, server, "2.19")["description"] == "again"

    too_early = act(cloud, server, body, microversion="2.1")  # description is 2.19+
    assert too_early.status_code == 400
    user_data = {"rebuild": {"imageRef": image, "user_data": "aGk="}}
    assert act(cloud, server, user_data, microversion="2.56").status_code == 400
    answer = act(cloud, server, user_data, microversion="2.57")
    assert answer.status_code == 202, answer.text
    wait_status(cloud, server, "ACTIVE")
    renamed = {"rebuild": {"imageRef": image, "hostname": "box-1"}}
    assert act(cloud, server, renamed, microversion="2.89").status_code == 400
    answer = act(cloud, server, renamed, microversion="2.90")
    assert answer.status_code == 202, answer.text
    latest = answer.json()["server"]
    assert latest["OS-EXT-SRV-ATTR:hostname"] == "box-1" and "server_groups" in latest
    assert "OS-EXT-SRV-ATTR:user_data" not in latest  # never in a rebuild's answer
    wait_status(cloud, server, "ACTIVE")
    no_image = act(cloud, server, {"rebuild": {"imageRef": str(uuid.uuid4())}})
    assert no_image.status_code == 400
    assert act(cloud, server, {"rebuild": {}}).status_code == 400
    assert act(cloud, server, {"rebuild": {"imageRef": image, "key_name": "nope"}},
               microversion="2.54").status_code == 400  # fmt: skip


def test_bad_actions_are_4xx(cloud: RunningCloud, server: str) -> None:
    assert act(cloud, server, {"reboot": {"type": "GENTLE"}}).status_code == 400
    assert act(cloud, server, {"reboot": {}}).status_code == 400
    assert act(cloud, server, {"reboot": None}).status_code == 400
    assert act(cloud, str(uuid.uuid4()), {"pause": None}).status_code == 404
    # Another project's server is not found for a member.
    assert act(cloud, server, {"pause": None}, as_=DEMO).status_code == 404
    cloud.openstack("server", "stop", server)
    wait_status(cloud, server, "SHUTOFF")
    soft = act(cloud, server, {"reboot": {"type": "SOFT"}})
    assert soft.status_code == 409 and "vm_state stopped" in soft.text
    # A hard reboot starts a stopped server, as in Nova.
    cloud.openstack("server", "reboot", "--hard", "--wait", server)
    wait_status(cloud, server, "ACTIVE")
