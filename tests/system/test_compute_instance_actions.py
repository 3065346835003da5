"""``os-instance-actions`` through the running cloud: ``openstack server event list/show`` and the
per-microversion fields, paging and errors (raw API calls)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.system.conftest import ADMIN, DEMO, RunningCloud, unique


def boot(cloud: RunningCloud, image: str, *, as_: str = ADMIN) -> str:
    deadline = time.monotonic() + 60
    while True:  # the compute host registers with its first report, a few seconds after start
        proc = cloud.run_cli(
            "server", "create", "--image", image, "--flavor", "m1.tiny", "--wait",
            "-f", "json", unique("vm"), cloud=as_,
        )  # fmt: skip
        if proc.returncode == 0:
            return str(json.loads(proc.stdout)["id"])
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(1)


def wait_settled(cloud: RunningCloud, server_id: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        got = cloud.sdk().compute.get(f"/servers/{server_id}").json()["server"]
        if got["status"] == status and got["OS-EXT-STS:task_state"] is None:
            return
        assert time.monotonic() < deadline, f"still {got['status']}"
        time.sleep(0.2)


def get(cloud: RunningCloud, path: str, microversion: str = "2.1", as_: str = ADMIN) -> Any:
    return cloud.sdk(as_).compute.get(path, microversion=microversion)


def test_event_list_and_show_cover_every_action(cloud: RunningCloud, image: str) -> None:
    server = boot(cloud, image)
    cloud.openstack("server", "stop", server)
    wait_settled(cloud, server, "SHUTOFF")
    cloud.openstack("server", "start", server)
    wait_settled(cloud, server, "ACTIVE")
    reboot = cloud.sdk().compute.post(
        f"/servers/{server}/action", json={"reboot": {"type": "SOFT"}}
    )
    assert reboot.status_code == 202
    request_id = reboot.headers["X-Openstack-Request-Id"]
    wait_settled(cloud, server, "ACTIVE")
    cloud.openstack("server", "pause", server)
    wait_settled(cloud, server, "PAUSED")

    listed = cloud.openstack("server", "event", "list", server)
    actions = [row["Action"] for row in listed]
    assert actions == ["pause", "reboot", "start", "stop", "create"]  # newest first
    assert next(r for r in listed if r["Action"] == "reboot")["Request ID"] == request_id

    shown = cloud.openstack("server", "event", "show", server, request_id)
    assert shown["action"] == "reboot" and shown["request_id"] == request_id
    events = shown["events"]
    assert [e["event"] for e in events] == ["compute_reboot_instance"]
    assert events[0]["result"] == "Success" and events[0]["finish_time"]

    create = next(r for r in listed if r["Action"] == "create")["Request ID"]
    built = get(cloud, f"/servers/{server}/os-instance-actions/{create}").json()
    steps = {e["event"]: e["result"] for e in built["instanceAction"]["events"]}
    assert steps == {
        "conductor_schedule_and_build_instances": "Success",
        "compute__do_build_and_run_instance": "Success",
    }

    cloud.openstack("server", "delete", "--wait", server)
    after = get(cloud, f"/servers/{server}/os-instance-actions").json()["instanceActions"]
    assert after[0]["action"] == "delete"  # a deleted server keeps its actions


def test_fields_per_microversion(cloud: RunningCloud, image: str) -> None:
    server = boot(cloud, image, as_=DEMO)
    listed = get(cloud, f"/servers/{server}/os-instance-actions", as_=DEMO).json()
    create = listed["instanceActions"][0]
    assert create["action"] == "create" and "updated_at" not in create
    path = f"/servers/{server}/os-instance-actions/{create['request_id']}"

    old = get(cloud, path, "2.1", as_=DEMO).json()["instanceAction"]
    assert "events" not in old  # before 2.51 only admins see events
    member = get(cloud, path, "2.62", as_=DEMO).json()["instanceAction"]
    event = member["events"][0]  # newest first: compute__do_build_and_run_instance, on the host
    assert event["event"] == "compute__do_build_and_run_instance"
    assert "traceback" not in event and "host" not in event and event["hostId"]
    admin = get(cloud, path, "2.62").json()["instanceAction"]["events"][0]
    assert "traceback" in admin and admin["host"]
    assert "details" in get(cloud, path, "2.84").json()["instanceAction"]["events"][0]
    assert "updated_at" in get(cloud, path, "2.58").json()["instanceAction"]
    cloud.run_cli("server", "delete", "--wait", server, cloud=DEMO)


def test_paging_and_errors(cloud: RunningCloud, image: str) -> None:
    server = boot(cloud, image)
    cloud.openstack("server", "pause", server)
    wait_settled(cloud, server, "PAUSED")
    cloud.openstack("server", "unpause", server)
    wait_settled(cloud, server, "ACTIVE")
    base = f"/servers/{server}/os-instance-actions"

    first = get(cloud, base + "?limit=1", "2.58").json()
    assert [a["action"] for a in first["instanceActions"]] == ["unpause"]
    assert first["links"][0]["rel"] == "next"
    marker = first["instanceActions"][0]["request_id"]
    rest = get(cloud, f"{base}?marker={marker}", "2.58").json()["instanceActions"]
    assert [a["action"] for a in rest] == ["pause", "create"]
    future = get(cloud, base + "?changes-since=2999-01-01T00:00:00Z", "2.58").json()
    assert future["instanceActions"] == []
    past = get(cloud, base + "?changes-before=2000-01-01T00:00:00Z", "2.66").json()
    assert past["instanceActions"] == []

    for query in ("limit=-1", "limit=abc", "marker=req-nope", "changes-since=yesterday"):
        assert get(cloud, f"{base}?{query}", "2.58").status_code == 400, query
    assert get(cloud, f"{base}?changes-before=soon", "2.66").status_code == 400
    assert get(cloud, f"{base}/req-{uuid.uuid4()}").status_code == 404
    assert get(cloud, f"/servers/{uuid.uuid4()}/os-instance-actions").status_code == 404
    assert get(cloud, base, as_=DEMO).status_code == 404  # another project's server
    cloud.run_cli("server", "delete", "--wait", server)
