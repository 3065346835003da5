"""Snapshots, shelving and console output through the running cloud, with the real ``openstack``
CLI for the acceptance commands and openstacksdk's raw session for status codes and microversions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.system.conftest import ADMIN, DEMO, RunningCloud, unique, upload_tiny_image


@pytest.fixture(scope="module")
def base_image(cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    image_id = upload_tiny_image(
        cloud, tmp_path_factory.mktemp("img"), "--property", "os_distro=cirros"
    )
    yield image_id
    cloud.run_cli("image", "delete", image_id)


@pytest.fixture(scope="module")
def compute(cloud: RunningCloud) -> Any:
    """The admin's compute proxy, once the compute host has registered."""
    conn = cloud.sdk()
    deadline = time.monotonic() + 30
    while not list(conn.compute.hypervisors()):
        assert time.monotonic() < deadline, "no compute host reported"
        time.sleep(0.2)
    return conn.compute


def boot(cloud: RunningCloud, image: str, *, as_: str = ADMIN) -> dict[str, Any]:
    server: dict[str, Any] = cloud.openstack(
        "server",
        "create",
        "--image",
        image,
        "--flavor",
        "m1.tiny",
        "--wait",
        unique("vm"),
        cloud=as_,
    )
    assert server["status"] == "ACTIVE"
    return server


def console_log(cloud: RunningCloud, *args: str) -> str:
    """``openstack console log show ARGS`` (plain text: it takes no ``-f``)."""
    proc = cloud.run_cli("console", "log", "show", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def server_of(compute: Any, server_id: str) -> dict[str, Any]:
    body: dict[str, Any] = compute.get(f"/servers/{server_id}", microversion="2.1").json()
    return body["server"]  # type: ignore[no-any-return]


def wait_for(compute: Any, server_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        server = server_of(compute, server_id)
        if server["status"] == status and server["OS-EXT-STS:task_state"] is None:
            return server
        assert time.monotonic() < deadline, f"still {server['status']}, not {status}"
        time.sleep(0.1)


def act(compute: Any, server_id: str, body: Any, version: str = "2.1") -> Any:
    return compute.post(
        f"/servers/{server_id}/action", json=body, microversion=version, raise_exc=False
    )


def test_server_image_create_waits_and_the_snapshot_boots(
    cloud: RunningCloud, base_image: str, compute: Any
) -> None:
    server = boot(cloud, base_image)
    name = unique("snap")
    image = cloud.openstack(
        "server",
        "image",
        "create",
        "--wait",
        "--name",
        name,
        "--property",
        "purpose=test",
        server["id"],
    )
    assert image["name"] == name and image["status"] == "active"
    shown = cloud.openstack("image", "show", image["id"])
    props = shown["properties"]
    assert props["instance_uuid"] == server["id"]
    assert props["image_type"] == "snapshot"
    assert props["base_image_ref"] == base_image
    assert props["os_distro"] == "cirros"  # inherited from the base image
    assert props["purpose"] == "test"
    assert props["image_location"] == "snapshot"
    assert shown["visibility"] == "private" and shown["min_disk"] == 1
    assert shown["owner"] == server_of(compute, server["id"])["tenant_id"]
    assert shown["size"] > 0
    assert server_of(compute, server["id"])["status"] == "ACTIVE"
    events = cloud.openstack("server", "event", "list", server["id"])
    snap = next(e for e in events if e["Action"] == "createImage")
    shown = cloud.openstack("server", "event", "show", server["id"], snap["Request ID"])
    steps = {e["event"]: e["result"] for e in shown["events"]}
    assert steps == {"compute_snapshot_instance": "Success"}

    clone = boot(cloud, image["id"])
    log = console_log(cloud, clone["id"])
    assert f"Root disk from image {image['id']}" in log
    cloud.openstack("server", "delete", "--wait", clone["id"], server["id"])
    cloud.run_cli("image", "delete", image["id"])


def test_create_image_answers_per_microversion_and_refuses_bad_input(
    cloud: RunningCloud, base_image: str, compute: Any
) -> None:
    server = boot(cloud, base_image)
    sid = server["id"]
    old = act(compute, sid, {"createImage": {"name": unique("old")}})
    assert old.status_code == 202 and not old.content
    old_id = old.headers["Location"].rsplit("/", 1)[1]
    wait_for(compute, sid, "ACTIVE")
    new = act(compute, sid, {"createImage": {"name": unique("new")}}, "2.45")
    assert new.status_code == 202
    new_id = new.json()["image_id"]
    wait_for(compute, sid, "ACTIVE")
    for bad in (
        {"createImage": {}},
        {"createImage": {"name": ""}},
        {"createImage": {"name": " padded "}},
        {"createImage": {"name": "x", "metadata": ["a"]}},
        {"createImage": {"name": "x", "metadata": {"k": 1}}},
        {"createImage": {"name": "x", "other": 1}},
        {"createImage": None},
    ):
        resp = act(compute, sid, bad)
        assert resp.status_code == 400, (bad, resp.status_code, resp.text)
        assert "badRequest" in resp.json()
    too_many = {"createImage": {"name": "x", "metadata": {f"k{i}": "v" for i in range(129)}}}
    assert act(compute, sid, too_many).status_code == 403
    missing = act(compute, "8c8e4d0e-0000-4000-8000-000000000000", {"createImage": {"name": "x"}})
    assert missing.status_code == 404
    cloud.openstack("server", "delete", "--wait", sid)
    for image_id in (old_id, new_id):
        assert cloud.openstack("image", "show", image_id)["status"] == "active"
        cloud.run_cli("image", "delete", image_id)


def test_shelve_offloads_and_unshelve_brings_it_back(
    cloud: RunningCloud, base_image: str, compute: Any
) -> None:
    server = boot(cloud, base_image, as_=DEMO)
    sid = server["id"]
    cloud.openstack("server", "shelve", "--wait", sid, cloud=DEMO)
    shelved = wait_for(compute, sid, "SHELVED_OFFLOADED")
    assert shelved["OS-EXT-STS:vm_state"] == "shelved_offloaded"
    assert shelved["OS-EXT-SRV-ATTR:host"] is None
    assert shelved["OS-EXT-STS:power_state"] == 4
    images = cloud.openstack("image", "list", "--name", f"{server['name']}-shelved", cloud=DEMO)
    assert len(images) == 1 and images[0]["Status"] == "active"

    # Wrong states are refused, never half-done.
    assert act(compute, sid, {"shelve": None}).status_code == 409
    assert act(compute, sid, {"createImage": {"name": "x"}}).status_code == 409
    assert act(compute, sid, {"shelveOffload": None}).status_code == 409
    assert act(cloud.sdk(DEMO).compute, sid, {"shelveOffload": None}).status_code == 403
    assert act(compute, sid, {"os-getConsoleOutput": {}}).status_code == 409

    demo = cloud.sdk(DEMO).compute
    assert act(demo, sid, {"unshelve": {"host": "any"}}, "2.91").status_code == 403  # admins'
    cloud.openstack("server", "unshelve", "--wait", sid, cloud=DEMO)
    back = wait_for(compute, sid, "ACTIVE")
    assert back["image"]["id"] == base_image
    assert back["OS-EXT-SRV-ATTR:host"]
    assert cloud.openstack("image", "list", "--name", f"{server['name']}-shelved") == []
    assert act(compute, sid, {"unshelve": None}).status_code == 409
    actions = [e["Action"] for e in cloud.openstack("server", "event", "list", sid)]
    assert {"shelve", "unshelve"} <= set(actions) and actions.count("create") == 1
    cloud.openstack("server", "delete", "--wait", sid)


def test_unshelve_zone_and_host_per_microversion(
    cloud: RunningCloud, base_image: str, compute: Any
) -> None:
    server = boot(cloud, base_image)
    sid = server["id"]
    host = server_of(compute, sid)["OS-EXT-SRV-ATTR:host"]
    assert act(compute, sid, {"shelve": None}).status_code == 202
    wait_for(compute, sid, "SHELVED_OFFLOADED")
    demo = cloud.sdk(DEMO).compute
    cases = [
        ("2.77", {"unshelve": {}}, 400),
        ("2.77", {"unshelve": {"availability_zone": None}}, 400),
        ("2.77", {"unshelve": {"availability_zone": "atlantis"}}, 400),
        ("2.77", {"unshelve": {"host": host}}, 400),
        ("2.91", {"unshelve": {"host": "no-such-host"}}, 400),
        ("2.91", {"unshelve": {"host": 7}}, 400),
    ]
    for version, body, status in cases:
        resp = act(compute, sid, body, version)
        assert resp.status_code == status, (version, body, resp.status_code, resp.text)
    # Another project's user does not even see it.
    assert act(demo, sid, {"unshelve": {"host": host}}, "2.91").status_code == 404
    resp = act(compute, sid, {"unshelve": {"availability_zone": "nova", "host": host}}, "2.91")
    assert resp.status_code == 202, resp.text
    back = wait_for(compute, sid, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == host
    cloud.openstack("server", "delete", "--wait", sid)


def test_console_log_show(cloud: RunningCloud, base_image: str, compute: Any) -> None:
    server = boot(cloud, base_image)
    sid = server["id"]
    log = console_log(cloud, sid)
    lines = log.splitlines()
    assert any(f"Booting instance {sid}" in line for line in lines)
    assert len(lines) == 5
    two = console_log(cloud, "--lines", "2", sid)
    assert two.splitlines() == lines[-2:]

    for length, count in ((None, 5), (-1, 5), ("3", 3), (0, 0), (1, 1)):
        resp = act(compute, sid, {"os-getConsoleOutput": {"length": length}})
        assert resp.status_code == 200, resp.text
        output = resp.json()["output"]
        assert len(output.splitlines()) == count, (length, output)
    for bad in ("abc", -2, "-2", True, 1.5, [1]):
        resp = act(compute, sid, {"os-getConsoleOutput": {"length": bad}})
        assert resp.status_code == 400, (bad, resp.status_code, resp.text)
    resp = act(compute, sid, {"os-getConsoleOutput": {"lines": 2}})
    assert resp.status_code == 400
    cloud.openstack("server", "delete", "--wait", sid)
