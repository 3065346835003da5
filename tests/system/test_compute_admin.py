"""Nova's admin read APIs against a running aiostack: services, hypervisors, availability zones.

Through the real ``openstack`` CLI (admin and member); microversion details, faults and the paths
the CLI does not take with plain requests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from cloud.scheduler.actor import load_hosts
from cloud.scheduler.filters import Request, choose
from tests.conftest import dsn_for
from tests.system.conftest import DEMO, RunningCloud, unique
from tests.system.test_compute_flavors import nova, token


def db(cloud: RunningCloud, fn: Callable[[asyncpg.Connection], Any]) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(dsn_for(cloud.database))
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def services(cloud: RunningCloud) -> list[dict[str, Any]]:
    return list(cloud.openstack("compute", "service", "list"))


@pytest.fixture(scope="module")
def host(cloud: RunningCloud) -> str:
    """The compute host, once its agent reported and the scheduler and conductor heartbeat."""
    deadline = time.monotonic() + 40
    while True:
        found = services(cloud)
        up = {s["Binary"] for s in found if s["State"] == "up"}
        if {"nova-compute", "nova-scheduler", "nova-conductor"} <= up:
            return str(next(s["Host"] for s in found if s["Binary"] == "nova-compute"))
        assert time.monotonic() < deadline, f"services never all up: {found}"
        time.sleep(0.5)


def test_service_list(cloud: RunningCloud, host: str) -> None:
    found = services(cloud)
    compute = [s for s in found if s["Binary"] == "nova-compute"]
    assert [s["Host"] for s in compute] == [host]
    assert compute[0]["Status"] == "enabled" and compute[0]["Zone"] == "nova"
    for s in found:
        uuid.UUID(str(s["ID"]))  # the CLI negotiates >= 2.53: uuids
        if s["Binary"] != "nova-compute":
            assert s["Zone"] == "internal"
    only = cloud.openstack("compute", "service", "list", "--service", "nova-scheduler")
    assert only and {s["Binary"] for s in only} == {"nova-scheduler"}
    assert cloud.openstack("compute", "service", "list", "--host", "no-such-host") == []
    # Before 2.53 ids are integers, and stable.
    tok = token(cloud)
    old = nova(cloud, "GET", "/os-services", tok).json()["services"]
    again = nova(cloud, "GET", "/os-services?binary=nova-compute", tok).json()["services"]
    assert all(isinstance(s["id"], int) for s in old) and "forced_down" not in old[0]
    assert [s["id"] for s in old if s["binary"] == "nova-compute"] == [s["id"] for s in again]


def test_disable_enable_compute_service(cloud: RunningCloud, host: str) -> None:
    reason = unique("maintenance")
    cloud.openstack(
        "compute", "service", "set", "--disable", "--disable-reason", reason, host, "nova-compute"
    )
    try:
        (svc,) = cloud.openstack("compute", "service", "list", "--service", "nova-compute")
        assert svc["Status"] == "disabled"
        long = cloud.openstack("compute", "service", "list", "--long")
        assert [s["Disabled Reason"] for s in long if s["Binary"] == "nova-compute"] == [reason]
        shown = cloud.openstack("hypervisor", "show", host)
        assert shown["status"] == "disabled" and shown["service_host"] == host
        # The scheduler reads the same row: it has no host left for any request.
        hosts = db(cloud, load_hosts)
        decision = choose(
            hosts, Request(vcpus=1, ram_mb=64, disk_gb=1, now=hosts[0].last_report_at)
        )
        assert decision.hosts == [] and decision.eliminated["ComputeFilter"] == 1
        zones = cloud.openstack("availability", "zone", "list", "--compute")
        assert {"Zone Name": "nova", "Zone Status": "not available"} in zones
    finally:
        cloud.openstack("compute", "service", "set", "--enable", host, "nova-compute")
    (svc,) = cloud.openstack("compute", "service", "list", "--service", "nova-compute")
    assert svc["Status"] == "enabled"
    long = cloud.openstack("compute", "service", "list", "--long")
    assert [s["Disabled Reason"] for s in long if s["Binary"] == "nova-compute"] == [None]


def test_update_service_api(cloud: RunningCloud, host: str) -> None:
    tok = token(cloud)
    listed = nova(cloud, "GET", f"/os-services?host={host}", tok, version="2.53").json()
    sid = next(s["id"] for s in listed["services"] if s["binary"] == "nova-compute")
    path = f"/os-services/{sid}"
    assert nova(cloud, "PUT", path, tok, {"status": "disabled"}, version="2.1").status_code == 404
    for bad in (
        {},
        {"status": "off"},
        {"status": "enabled", "disabled_reason": "x"},
        {"forced_down": "yes"},
        {"bogus": 1},
        [1],
    ):
        resp = nova(cloud, "PUT", path, tok, bad, version="2.53")
        assert resp.status_code == 400, (bad, resp.text)
    resp = nova(cloud, "PUT", path, tok, {"forced_down": True}, version="2.53")
    assert resp.status_code == 200, resp.text
    assert resp.json()["service"]["state"] == "down" and resp.json()["service"]["forced_down"]
    resp = nova(cloud, "PUT", path, tok, {"forced_down": False}, version="2.53")
    assert resp.json()["service"]["forced_down"] is False
    missing = f"/os-services/{uuid.uuid4()}"
    assert (
        nova(cloud, "PUT", missing, tok, {"status": "enabled"}, version="2.53").status_code == 404
    )
    scheduler = next(s["id"] for s in listed["services"] if s["binary"] == "nova-scheduler")
    resp = nova(cloud, "DELETE", f"/os-services/{scheduler}", tok, version="2.53")
    assert resp.status_code == 400
    assert nova(cloud, "DELETE", "/os-services/nope", tok, version="2.53").status_code == 400


def test_delete_compute_service(cloud: RunningCloud, host: str) -> None:
    ghost = unique("ghost")
    db(cloud, lambda c: c.execute("INSERT INTO cmp_hosts (host) VALUES ($1)", ghost))
    (svc,) = cloud.openstack("compute", "service", "list", "--host", ghost)
    assert svc["State"] == "down"  # it never reported
    cloud.openstack("compute", "service", "delete", str(svc["ID"]))
    assert cloud.openstack("compute", "service", "list", "--host", ghost) == []


def test_hypervisors(cloud: RunningCloud, host: str) -> None:
    listed = cloud.openstack("hypervisor", "list")
    (hyp,) = [h for h in listed if h["Hypervisor Hostname"] == host]
    assert hyp["Hypervisor Type"] == "fake" and hyp["State"] == "up"
    uuid.UUID(str(hyp["ID"]))
    shown = cloud.openstack("hypervisor", "show", host)
    assert shown["id"] == hyp["ID"] and shown["state"] == "up" and shown["status"] == "enabled"
    assert shown["hypervisor_type"] == "fake" and "vcpus" not in shown  # the CLI speaks 2.88
    stats = cloud.openstack("hypervisor", "stats", "show")  # the CLI asks for 2.1
    assert stats["count"] >= 1 and stats["vcpus"] > 0 and stats["memory_mb"] > 0
    tok = token(cloud)
    old = nova(cloud, "GET", "/os-hypervisors/detail", tok, version="2.87").json()["hypervisors"]
    (mine,) = [h for h in old if h["hypervisor_hostname"] == host]
    for key in ("vcpus", "memory_mb", "local_gb", "vcpus_used", "running_vms", "host_ip"):
        assert key in mine
    assert mine["id"] == hyp["ID"] and mine["cpu_info"] == {}
    one = nova(cloud, "GET", f"/os-hypervisors/{hyp['ID']}", tok, version="latest").json()
    assert "vcpus" not in one["hypervisor"] and "uptime" in one["hypervisor"]
    assert nova(cloud, "GET", "/os-hypervisors/statistics", tok, version="2.88").status_code == 404
    v21 = nova(cloud, "GET", "/os-hypervisors", tok).json()["hypervisors"]
    assert all(isinstance(h["id"], int) for h in v21)
    assert nova(cloud, "GET", "/os-hypervisors/nope", tok, version="2.53").status_code == 404
    resp = nova(
        cloud,
        "GET",
        f"/os-hypervisors?hypervisor_hostname_pattern={host}&with_servers=true",
        tok,
        version="2.53",
    )
    assert resp.status_code == 200 and "servers" in resp.json()["hypervisors"][0]
    assert (
        nova(cloud, "GET", "/os-hypervisors?with_servers=maybe", tok, version="2.53").status_code
        == 400
    )


def test_availability_zones(cloud: RunningCloud, host: str) -> None:
    zones = cloud.openstack("availability", "zone", "list", "--compute")
    assert {"Zone Name": "nova", "Zone Status": "available"} in zones
    long = cloud.openstack("availability", "zone", "list", "--compute", "--long")
    rows = {(z["Zone Name"], z["Host Name"], z["Service Name"]) for z in long}
    assert ("nova", host, "nova-compute") in rows
    assert {r[2] for r in rows if r[0] == "internal"} >= {"nova-scheduler", "nova-conductor"}
    member = cloud.openstack("availability", "zone", "list", "--compute", "--long", cloud=DEMO)
    assert [z["Zone Name"] for z in member] == ["nova"]  # no detail for members: the plain list


def test_member_is_forbidden(cloud: RunningCloud, host: str) -> None:
    for args in (
        ("compute", "service", "list"),
        ("hypervisor", "list"),
        ("compute", "service", "set", "--disable", host, "nova-compute"),
    ):
        err = cloud.fails(*args, cloud=DEMO)
        assert "403" in err or "Policy doesn't allow" in err, (args, err)
    tok = token(cloud, DEMO)
    for method, path in (
        ("GET", "/os-services"),
        ("GET", "/os-hypervisors/detail"),
        ("GET", "/os-hypervisors/statistics"),  # the CLI's stats show does not check the status
        ("GET", "/os-aggregates"),
        ("GET", "/os-availability-zone/detail"),
        ("DELETE", f"/os-services/{uuid.uuid4()}"),
        ("PUT", f"/os-services/{uuid.uuid4()}"),
    ):
        body = {"status": "enabled"} if method == "PUT" else None
        assert nova(cloud, method, path, tok, body, version="2.53").status_code == 403, path
    assert nova(cloud, "GET", "/os-availability-zone", tok).status_code == 200
