"""Servers through the running cloud with the real ``openstack`` CLI: boot on the fake compute host,
list, show, delete; project isolation."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.system.conftest import ADMIN, DEMO, CliError, RunningCloud, unique


def wait_status(cloud: RunningCloud, server_id: str, status: str, timeout: float = 20) -> None:
    token = cloud.openstack("token", "issue")["id"]
    url = f"{cloud.url}/compute/v2.1/servers/{server_id}"
    deadline = time.monotonic() + timeout
    while True:
        server = requests.get(url, headers={"X-Auth-Token": token}, timeout=10).json()["server"]
        if server["status"] == status and server["OS-EXT-STS:task_state"] is None:
            return
        assert time.monotonic() < deadline, f"still {server['status']}, not {status}"
        time.sleep(0.1)


def create(
    cloud: RunningCloud, image: str, name: str, *, as_: str = ADMIN, wait: bool = True
) -> dict[str, Any]:
    flags = ("--wait",) if wait else ()
    server: dict[str, Any] = cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.tiny", *flags, name, cloud=as_
    )
    return server


def test_boot_list_show_delete(cloud: RunningCloud, image: str, host: str) -> None:
    name = unique("vm")
    server = create(cloud, image, name)
    assert server["status"] == "ACTIVE"
    assert server["name"] == name

    listed = cloud.openstack("server", "list", "--long")
    row = next(r for r in listed if r["ID"] == server["id"])
    assert row["Status"] == "ACTIVE" and row["Power State"] in (1, "Running")
    assert row["Image ID"] == image

    shown = cloud.openstack("server", "show", server["id"])
    assert shown["OS-EXT-STS:vm_state"] == "active"
    assert shown["OS-EXT-AZ:availability_zone"] == "nova"
    assert shown["OS-EXT-SRV-ATTR:host"]  # admins see the host
    assert shown["hostId"]

    cloud.openstack("server", "stop", server["id"])
    wait_status(cloud, server["id"], "SHUTOFF")
    assert "Cannot 'stop'" in cloud.fails("server", "stop", server["id"])
    cloud.openstack("server", "start", server["id"])
    wait_status(cloud, server["id"], "ACTIVE")

    cloud.openstack("server", "delete", "--wait", server["id"])
    with pytest.raises(CliError):
        cloud.openstack("server", "show", server["id"])


def test_idempotent_boot_returns_the_same_server(
    cloud: RunningCloud, image: str, host: str
) -> None:
    token = cloud.openstack("token", "issue")["id"]
    headers = {"X-Auth-Token": token, "Idempotency-Key": unique("key")}
    body = {"server": {"name": unique("vm"), "imageRef": image, "flavorRef": "1"}}
    url = f"{cloud.url}/compute/v2.1/servers"
    first = requests.post(url, json=body, headers=headers, timeout=10)
    second = requests.post(url, json=body, headers=headers, timeout=10)
    assert first.status_code == second.status_code == 202, first.text
    server_id = first.json()["server"]["id"]
    assert second.json()["server"]["id"] == server_id
    named = requests.get(
        url, params={"name": body["server"]["name"]}, headers=headers, timeout=10
    ).json()
    assert [s["id"] for s in named["servers"]] == [server_id]
    cloud.openstack("server", "delete", server_id)


def test_a_member_sees_only_their_projects_servers(
    cloud: RunningCloud, image: str, host: str
) -> None:
    admins = create(cloud, image, unique("vm"), wait=False)
    demos = create(cloud, image, unique("vm"), as_=DEMO, wait=False)
    try:
        ids = {r["ID"] for r in cloud.openstack("server", "list", cloud=DEMO)}
        assert demos["id"] in ids and admins["id"] not in ids
        refused = cloud.fails("server", "show", admins["id"], cloud=DEMO)
        assert "No Server found" in refused
        assert cloud.fails("server", "delete", admins["id"], cloud=DEMO)
        every = {r["ID"] for r in cloud.openstack("server", "list", "--all-projects")}
        assert {admins["id"], demos["id"]} <= every
        shown = cloud.openstack("server", "show", demos["id"], cloud=DEMO)
        assert "OS-EXT-SRV-ATTR:host" not in shown or not shown["OS-EXT-SRV-ATTR:host"]
    finally:
        cloud.openstack("server", "delete", admins["id"])
        cloud.openstack("server", "delete", demos["id"], cloud=DEMO)
