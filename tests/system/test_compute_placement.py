"""Placement through the running cloud: aggregates and zones, server groups, quotas, limits, usage.

The acceptance commands run through the real ``openstack`` CLI; protocol details (status codes,
microversions, fault bodies) through plain requests. The cloud has one compute host: what needs
several hosts is tested at the scheduler actor (tests/compute/test_scheduler_actor.py).
"""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.system.conftest import ADMIN, DEMO, RunningCloud, unique
from tests.system.test_compute_flavors import nova, token


def server(cloud: RunningCloud, server_id: str, as_: str = ADMIN) -> dict[str, Any]:
    url = f"{cloud.url}/compute/v2.1/servers/{server_id}"
    reply = requests.get(url, headers={"X-Auth-Token": token(cloud, as_)}, timeout=10)
    body: dict[str, Any] = reply.json()["server"]
    return body


def settle(cloud: RunningCloud, server_id: str, as_: str = ADMIN) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = server(cloud, server_id, as_)
        if found["status"] in ("ACTIVE", "ERROR") and found["OS-EXT-STS:task_state"] is None:
            return found
        assert time.monotonic() < deadline, f"server still {found['status']}"
        time.sleep(0.2)


def boot(cloud: RunningCloud, image: str, *args: str, as_: str = ADMIN) -> dict[str, Any]:
    created = cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.tiny", *args, unique("vm"), cloud=as_
    )
    return settle(cloud, str(created["id"]), as_)


def test_aggregate_zone_is_the_hosts_zone(cloud: RunningCloud, image: str, host: str) -> None:
    name = unique("agg")
    agg = cloud.openstack("aggregate", "create", "--zone", "az-one", name)
    assert agg["availability_zone"] == "az-one" and agg["name"] == name
    servers: list[str] = []
    try:
        cloud.openstack("aggregate", "add", "host", name, host)
        shown = cloud.openstack("aggregate", "show", name)
        assert shown["hosts"] == [host] and shown["availability_zone"] == "az-one"
        zones = cloud.openstack("availability", "zone", "list", "--compute")
        assert {"Zone Name": "az-one", "Zone Status": "available"} in zones
        assert all(z["Zone Name"] != "nova" for z in zones)  # the only host left "nova"
        cloud.openstack("aggregate", "set", "--zone", "az-two", "--property", "ssd=true", name)
        shown = cloud.openstack("aggregate", "show", name)
        assert shown["availability_zone"] == "az-two"
        assert shown["properties"] == {"ssd": "true"} or "ssd" in str(shown["properties"])
        (svc,) = cloud.openstack("compute", "service", "list", "--service", "nova-compute")
        assert svc["Zone"] == "az-two"
        cloud.openstack("aggregate", "unset", "--property", "ssd", name)
        assert "ssd" not in str(cloud.openstack("aggregate", "show", name)["properties"])

        placed = boot(cloud, image, "--availability-zone", "az-two")
        servers.append(placed["id"])
        assert placed["status"] == "ACTIVE"
        assert placed["OS-EXT-AZ:availability_zone"] == "az-two"
        unzoned = boot(cloud, image)
        servers.append(unzoned["id"])
        assert unzoned["OS-EXT-AZ:availability_zone"] == "az-two"  # the host's effective zone
        elsewhere = boot(cloud, image, "--availability-zone", "nova")
        servers.append(elsewhere["id"])
        assert elsewhere["status"] == "ERROR"
        assert "AvailabilityZoneFilter removed 1" in elsewhere["fault"]["message"]
    finally:
        for server_id in servers:
            cloud.run_cli("server", "delete", "--wait", server_id)
        cloud.run_cli("aggregate", "remove", "host", name, host)
        cloud.openstack("aggregate", "delete", name)
    zones = cloud.openstack("availability", "zone", "list", "--compute")
    names = {z["Zone Name"] for z in zones}
    assert "nova" in names and not names & {"az-one", "az-two"}
    assert name not in [a["Name"] for a in cloud.openstack("aggregate", "list")]


def test_aggregate_api_rules(cloud: RunningCloud, host: str) -> None:
    tok = token(cloud)
    first = nova(cloud, "POST", "/os-aggregates", tok, {"aggregate": {"name": unique("a")}})
    assert first.status_code == 200
    agg = first.json()["aggregate"]
    assert "hosts" not in agg and "uuid" not in agg
    name = agg["name"]
    other = nova(
        cloud, "POST", "/os-aggregates", tok,
        {"aggregate": {"name": unique("b"), "availability_zone": "zone-b"}}, version="2.41",
    )  # fmt: skip
    assert other.status_code == 200 and "uuid" in other.json()["aggregate"]
    other_id = other.json()["aggregate"]["id"]
    agg_id = agg["id"]

    def action(agg: int, body: dict[str, Any]) -> requests.Response:
        return nova(cloud, "POST", f"/os-aggregates/{agg}/action", tok, body)

    try:
        dup = nova(cloud, "POST", "/os-aggregates", tok, {"aggregate": {"name": name}})
        assert dup.status_code == 409
        assert action(agg_id, {"add_host": {"host": "no-such-host"}}).status_code == 404
        assert action(other_id, {"add_host": {"host": host}}).status_code == 200
        assert action(other_id, {"add_host": {"host": host}}).status_code == 409
        # The host is in zone-b: putting it in a second zone is refused.
        assert action(agg_id, {"add_host": {"host": host}}).status_code == 200
        meta = action(agg_id, {"set_metadata": {"metadata": {"availability_zone": "zone-c"}}})
        assert meta.status_code == 400 and "zone-b" in meta.json()["badRequest"]["message"]
        same = action(agg_id, {"set_metadata": {"metadata": {"availability_zone": "zone-b"}}})
        assert same.status_code == 200
        assert nova(cloud, "DELETE", f"/os-aggregates/{agg_id}", tok).status_code == 400
        assert nova(cloud, "GET", "/os-aggregates/nope", tok).status_code == 400
        assert nova(cloud, "GET", "/os-aggregates/999999", tok).status_code == 404
        bad = action(agg_id, {"remove_host": {"host": "no-such-host"}})
        assert bad.status_code == 404
        assert nova(cloud, "POST", "/os-aggregates", tok, {"aggregate": {}}).status_code == 400
    finally:
        for agg_ in (agg_id, other_id):
            action(agg_, {"remove_host": {"host": host}})
            assert nova(cloud, "DELETE", f"/os-aggregates/{agg_}", tok).status_code == 200
    demo = token(cloud, DEMO)
    assert nova(cloud, "GET", "/os-aggregates", demo).status_code == 403
    assert (
        nova(cloud, "POST", "/os-aggregates", demo, {"aggregate": {"name": "x"}}).status_code == 403
    )


def boot_raw(cloud: RunningCloud, image: str, hints: dict[str, Any]) -> requests.Response:
    body = {
        "server": {"name": unique("vm"), "imageRef": image, "flavorRef": "1", "networks": "none"},
        "os:scheduler_hints": hints,
    }
    return nova(cloud, "POST", "/servers", token(cloud), body, version="2.37")


def test_server_group_anti_affinity(cloud: RunningCloud, image: str, host: str) -> None:
    group = cloud.openstack("server", "group", "create", "--policy", "anti-affinity", unique("g"))
    assert group["policy"] == "anti-affinity"
    servers: list[str] = []
    try:
        # Booted through the API with ``os:scheduler_hints`` (the CLI's --hint sends the legacy
        # ``OS-SCH-HNT:scheduler_hints`` key, which the servers API does not take yet).
        for _ in range(2):
            reply = boot_raw(cloud, image, {"group": group["id"]})
            assert reply.status_code == 202, reply.text
            servers.append(reply.json()["server"]["id"])
        first, second = (settle(cloud, s) for s in servers)
        assert first["status"] == "ACTIVE"
        assert second["status"] == "ERROR"
        assert "No valid host was found" in second["fault"]["message"]
        assert "ServerGroupAntiAffinityFilter removed 1" in second["fault"]["message"]
        shown_first = nova(cloud, "GET", f"/servers/{first['id']}", token(cloud), version="2.71")
        assert shown_first.json()["server"]["server_groups"] == [group["id"]]
        shown = cloud.openstack("server", "group", "show", group["id"])
        members = shown["members"]
        members = members.split(", ") if isinstance(members, str) else members
        assert sorted(members) == sorted(servers)
        listed = cloud.openstack("server", "group", "list")
        assert group["id"] in [g["ID"] for g in listed]
    finally:
        for server_id in servers:
            cloud.run_cli("server", "delete", "--wait", server_id)
        cloud.openstack("server", "group", "delete", group["id"])
    # A hint naming no group of the project is refused before anything is created.
    missing = boot_raw(cloud, image, {"group": "0b2f6f0e-6a3c-4cde-9a39-0d5f1f1f1f1f"})
    assert missing.status_code == 400, missing.text
    assert boot_raw(cloud, image, {"group": "not-a-uuid"}).status_code == 400


def test_server_group_microversions(cloud: RunningCloud) -> None:
    tok = token(cloud, DEMO)
    old = nova(
        cloud, "POST", "/os-server-groups", tok,
        {"server_group": {"name": "old", "policies": ["affinity"]}}, version="2.13",
    )  # fmt: skip
    assert old.status_code == 200
    body = old.json()["server_group"]
    assert body["policies"] == ["affinity"] and body["members"] == [] and "project_id" in body
    new = nova(
        cloud, "POST", "/os-server-groups", tok,
        {"server_group": {"name": "new", "policy": "anti-affinity",
                          "rules": {"max_server_per_host": 2}}}, version="2.64",
    )  # fmt: skip
    assert new.status_code == 200
    assert new.json()["server_group"]["rules"] == {"max_server_per_host": 2}
    bad = nova(
        cloud, "POST", "/os-server-groups", tok,
        {"server_group": {"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}},
        version="2.64",
    )  # fmt: skip
    assert bad.status_code == 400
    soft_too_early = nova(
        cloud, "POST", "/os-server-groups", tok,
        {"server_group": {"name": "x", "policies": ["soft-affinity"]}}, version="2.14",
    )  # fmt: skip
    assert soft_too_early.status_code == 400
    admin = token(cloud)
    every = nova(cloud, "GET", "/os-server-groups?all_projects=True", admin).json()
    assert {old.json()["server_group"]["id"], new.json()["server_group"]["id"]} <= {
        g["id"] for g in every["server_groups"]
    }
    own = nova(cloud, "GET", "/os-server-groups", admin).json()["server_groups"]
    assert old.json()["server_group"]["id"] not in {g["id"] for g in own}
    for created in (old, new):
        gid = created.json()["server_group"]["id"]
        assert nova(cloud, "DELETE", f"/os-server-groups/{gid}", tok).status_code == 204
        assert nova(cloud, "GET", f"/os-server-groups/{gid}", tok).status_code == 404


def test_quota_show_set_and_a_boot_beyond_quota(cloud: RunningCloud, image: str, host: str) -> None:
    project = str(cloud.sdk(DEMO).current_project_id)
    shown = cloud.openstack("quota", "show", project)
    values = {row["Resource"]: row["Limit"] for row in shown} if isinstance(shown, list) else shown
    assert values["instances"] == 10 and values["cores"] == 20 and values["ram"] == 51200
    used = nova(cloud, "GET", "/limits", token(cloud, DEMO)).json()["limits"]["absolute"]
    allowed = used["totalInstancesUsed"] + 1
    cloud.openstack("quota", "set", "--instances", str(allowed), project)
    servers: list[str] = []
    try:
        shown = cloud.openstack("quota", "show", "--usage", project)
        rows = {r["Resource"]: r for r in shown}
        assert rows["instances"]["Limit"] == allowed
        assert rows["instances"]["In Use"] == allowed - 1
        first = boot(cloud, image, as_=DEMO)
        servers.append(first["id"])
        err = cloud.fails(
            "server", "create", "--image", image, "--flavor", "m1.tiny", unique("vm"), cloud=DEMO
        )
        assert (
            f"Quota exceeded for instances: Requested 1, but already used {allowed} of "
            f"{allowed} instances"
        ) in err
        assert "403" in err
        # The raw fault is Nova's: 403 "forbidden".
        body = {"server": {"name": "x", "imageRef": image, "flavorRef": "1"}}
        raw = nova(cloud, "POST", "/servers", token(cloud, DEMO), body)
        assert raw.status_code == 403 and raw.json()["forbidden"]["code"] == 403
        assert cloud.fails("quota", "set", "--instances", "3", project, cloud=DEMO)
    finally:
        for server_id in servers:
            cloud.run_cli("server", "delete", "--wait", server_id, cloud=DEMO)
        cloud.openstack("quota", "set", "--instances", "10", project)


def test_quota_api_details(cloud: RunningCloud) -> None:
    tok = token(cloud)
    project = str(cloud.sdk(DEMO).current_project_id)
    old = nova(cloud, "GET", f"/os-quota-sets/{project}", tok).json()["quota_set"]
    assert old["id"] == project and old["floating_ips"] == 10 and old["injected_files"] == 5
    mid = nova(cloud, "GET", f"/os-quota-sets/{project}", tok, version="2.36").json()
    assert "floating_ips" not in mid["quota_set"] and "injected_files" in mid["quota_set"]
    new = nova(cloud, "GET", f"/os-quota-sets/{project}/detail", tok, version="2.57").json()
    assert "injected_files" not in new["quota_set"]
    assert set(new["quota_set"]["instances"]) == {"limit", "in_use", "reserved"}
    defaults = nova(cloud, "GET", f"/os-quota-sets/{project}/defaults", tok).json()
    assert defaults["quota_set"]["server_group_members"] == 10
    put = nova(cloud, "PUT", f"/os-quota-sets/{project}", tok, {"quota_set": {"cores": 7}})
    assert put.status_code == 200 and put.json()["quota_set"]["cores"] == 7
    assert nova(cloud, "GET", f"/os-quota-sets/{project}", tok).json()["quota_set"]["cores"] == 7
    bad = nova(cloud, "PUT", f"/os-quota-sets/{project}", tok, {"quota_set": {"cores": -5}})
    assert bad.status_code == 400
    unknown = nova(cloud, "PUT", f"/os-quota-sets/{project}", tok, {"quota_set": {"nope": 1}})
    assert unknown.status_code == 400
    assert nova(cloud, "DELETE", f"/os-quota-sets/{project}", tok).status_code == 202
    assert nova(cloud, "GET", f"/os-quota-sets/{project}", tok).json()["quota_set"]["cores"] == 20
    demo = token(cloud, DEMO)
    assert nova(cloud, "GET", f"/os-quota-sets/{project}", demo).status_code == 200
    put_demo = nova(cloud, "PUT", f"/os-quota-sets/{project}", demo, {"quota_set": {"cores": 1}})
    assert put_demo.status_code == 403
    classes = nova(cloud, "GET", "/os-quota-class-sets/default", tok).json()
    assert classes["quota_class_set"]["instances"] == 10


def test_limits(cloud: RunningCloud) -> None:
    tok = token(cloud, DEMO)
    absolute = nova(cloud, "GET", "/limits", tok).json()["limits"]["absolute"]
    assert absolute["maxTotalInstances"] == 10 and absolute["maxTotalRAMSize"] == 51200
    assert absolute["maxPersonality"] == 5 and "totalInstancesUsed" in absolute
    newer = nova(cloud, "GET", "/limits", tok, version="2.57").json()["limits"]["absolute"]
    assert "maxPersonality" not in newer and "maxImageMeta" not in newer
    assert "maxTotalFloatingIps" not in newer and newer["maxServerGroups"] == 10
    shown = cloud.openstack("limits", "show", "--absolute", cloud=DEMO)
    values = {row["Name"]: row["Value"] for row in shown}
    assert values.get("instances", values.get("maxTotalInstances")) == 10


def count(value: Any) -> int:
    return len(value) if isinstance(value, list) else int(value)


def test_usage(cloud: RunningCloud, image: str, host: str) -> None:
    created = boot(cloud, image)
    time.sleep(1.1)  # at least a second of uptime to account for
    cloud.run_cli("server", "delete", "--wait", created["id"])
    rows = cloud.openstack("usage", "list")
    admin_project = str(cloud.sdk(ADMIN).current_project_id)
    assert rows and any(count(r["Servers"]) >= 1 for r in rows)
    shown = cloud.openstack("usage", "show", "--project", admin_project)
    assert count(shown["Servers"]) >= 1
    tok = token(cloud)
    path = f"/os-simple-tenant-usage/{admin_project}?start=2020-01-01T00:00:00"
    usage = nova(cloud, "GET", path, tok).json()
    mine = [s for s in usage["tenant_usage"]["server_usages"] if s["instance_id"] == created["id"]]
    assert mine and mine[0]["state"] == "terminated" and mine[0]["hours"] > 0
    assert mine[0]["flavor"] == "m1.tiny" and mine[0]["memory_mb"] == 512
    bad = nova(cloud, "GET", "/os-simple-tenant-usage?start=yesterday", tok)
    assert bad.status_code == 400
    empty = nova(cloud, "GET", "/os-simple-tenant-usage", tok)  # the empty period "now"
    assert empty.status_code == 200 and empty.json() == {"tenant_usages": []}
    backwards = "/os-simple-tenant-usage?start=2030-01-01T00:00:00&end=2020-01-01T00:00:00"
    assert nova(cloud, "GET", backwards, tok).status_code == 400
    demo = token(cloud, DEMO)
    assert nova(cloud, "GET", "/os-simple-tenant-usage", demo).status_code == 403


def test_a_disabled_service_takes_no_build(cloud: RunningCloud, image: str, host: str) -> None:
    cloud.openstack("compute", "service", "set", "--disable", host, "nova-compute")
    try:
        refused = boot(cloud, image)
        assert refused["status"] == "ERROR"
        assert "ComputeFilter removed 1" in refused["fault"]["message"]
    finally:
        cloud.openstack("compute", "service", "set", "--enable", host, "nova-compute")
    cloud.run_cli("server", "delete", "--wait", refused["id"])
    placed = boot(cloud, image)
    assert placed["status"] == "ACTIVE"
    cloud.run_cli("server", "delete", "--wait", placed["id"])
