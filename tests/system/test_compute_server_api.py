"""The servers API beyond boot/show/delete: description, multi-create, lock, networks, scheduler
hints, hostname and the list filters, through the real CLI and openstacksdk's raw session."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from tests.conftest import dsn_for
from tests.system.conftest import ADMIN, DEMO, RunningCloud, unique
from tests.system.test_compute_server_tags import Api, event_kinds
from tests.system.test_compute_servers import create, wait_status

LATEST = "2.92"


def boot_body(image: str, **server: Any) -> dict[str, Any]:
    """A boot request; ``networks=None`` leaves the field out (as clients before 2.37 do)."""
    body = {"name": unique("vm"), "imageRef": image, "flavorRef": "1", "networks": "none"}
    body |= server
    return {"server": {k: v for k, v in body.items() if v is not None}}


def test_cli_create_many_with_description_and_tags(
    cloud: RunningCloud, image: str, host: str
) -> None:
    name = unique("many")
    cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.tiny", "--description", "first",
        "--tag", "batch", "--min", "2", "--max", "3", "--wait", name,
    )  # fmt: skip
    rows = cloud.openstack("server", "list", "--long", "--name", f"^{name}-", "--tags", "batch")
    assert sorted(r["Name"] for r in rows) == [f"{name}-1", f"{name}-2", f"{name}-3"]
    shown = [cloud.openstack("server", "show", r["ID"]) for r in rows]
    try:
        assert {s["description"] for s in shown} == {"first"}
        assert len({s["OS-EXT-SRV-ATTR:reservation_id"] for s in shown}) == 1
        by_index = {s["OS-EXT-SRV-ATTR:launch_index"]: s for s in shown}
        assert sorted(by_index) == [0, 1, 2]
        assert by_index[1]["name"] == f"{name}-2"
        assert by_index[1]["OS-EXT-SRV-ATTR:hostname"] == f"{name}-2".lower()
        reservation = shown[0]["OS-EXT-SRV-ATTR:reservation_id"]
        listed = cloud.openstack("server", "list", "--reservation-id", reservation)
        assert {r["ID"] for r in listed} == {r["ID"] for r in rows}

        target = rows[0]["ID"]
        cloud.openstack("server", "set", "--description", "second", target)
        assert cloud.openstack("server", "show", target)["description"] == "second"
        assert "compute.instance.description_changed" in event_kinds(cloud, target)
    finally:
        cloud.run_cli("server", "delete", "--wait", *(r["ID"] for r in rows))


def test_multi_create_api(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud, ADMIN)
    body = boot_body(image, min_count=2, max_count=2, return_reservation_id=True)
    got = api("post", "/servers", ver=LATEST, json=body)
    assert got.status_code == 202, got.text
    reservation = got.json()["reservation_id"]
    servers = api("get", f"/servers/detail?reservation_id={reservation}", ver=LATEST).json()
    ids = [s["id"] for s in servers["servers"]]
    try:
        assert len(ids) == 2
        refused = api("post", "/servers", json=boot_body(image, min_count=3, max_count=2))
        assert refused.status_code == 400
        assert api("post", "/servers", json=boot_body(image, min_count=0)).status_code == 400
    finally:
        for server_id in ids:
            api("delete", f"/servers/{server_id}")


def test_idempotent_multi_create_returns_the_first_server(
    cloud: RunningCloud, image: str, host: str
) -> None:
    api = Api(cloud, ADMIN)
    key = unique("key")
    body = boot_body(image, min_count=2, max_count=2)
    headers = {"Idempotency-Key": key}
    first = api.conn.compute.post(
        "/servers", json=body, microversion=LATEST, headers=headers, raise_exc=False
    )
    again = api.conn.compute.post(
        "/servers", json=body, microversion=LATEST, headers=headers, raise_exc=False
    )
    assert first.status_code == again.status_code == 202, first.text
    server_id = first.json()["server"]["id"]
    assert again.json()["server"]["id"] == server_id
    shown = api("get", f"/servers/{server_id}", ver=LATEST).json()["server"]
    reservation = shown["OS-EXT-SRV-ATTR:reservation_id"]
    listed = api("get", f"/servers?reservation_id={reservation}").json()["servers"]
    try:
        assert len(listed) == 2 and shown["OS-EXT-SRV-ATTR:launch_index"] == 0
    finally:
        for s in listed:
            api("delete", f"/servers/{s['id']}")


def test_description_per_microversion(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud)
    assert (
        api(
            "post", "/servers", ver="2.18", json=boot_body(image, description="d", networks=None)
        ).status_code
        == 400
    )
    bad = boot_body(image, description="x" * 256, networks=None)
    assert api("post", "/servers", ver="2.19", json=bad).status_code == 400
    made = api(
        "post", "/servers", ver="2.19", json=boot_body(image, description="hello", networks=None)
    )
    assert made.status_code == 202, made.text
    server_id = made.json()["server"]["id"]
    try:
        assert (
            api("get", f"/servers/{server_id}", ver="2.19").json()["server"]["description"]
            == "hello"
        )
        assert "description" not in api("get", f"/servers/{server_id}", ver="2.18").json()["server"]
        put = api("put", f"/servers/{server_id}", ver="2.18", json={"server": {"description": "x"}})
        assert put.status_code == 400
        put = api(
            "put", f"/servers/{server_id}", ver="2.19", json={"server": {"description": None}}
        )
        assert put.status_code == 200 and put.json()["server"]["description"] is None
    finally:
        api("delete", f"/servers/{server_id}")


def test_networks_rules(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud)
    missing = boot_body(image, networks=None)
    refused = api("post", "/servers", ver="2.37", json=missing)
    assert refused.status_code == 400 and "networks" in refused.text
    assert api("post", "/servers", ver="2.36", json=boot_body(image)).status_code == 400  # "none"
    listed = boot_body(image, networks=[{"uuid": str(uuid.uuid4())}])
    refused = api("post", "/servers", ver="2.37", json=listed)
    assert refused.status_code == 400 and "Networking is not available" in refused.text
    assert (
        api("post", "/servers", ver="2.37", json=boot_body(image, networks="some")).status_code
        == 400
    )
    made = [
        api("post", "/servers", ver="2.37", json=boot_body(image, networks="auto")),
        api("post", "/servers", ver="2.36", json=missing),
    ]
    try:
        for got in made:
            assert got.status_code == 202, got.text
            server = api("get", f"/servers/{got.json()['server']['id']}", ver="2.37").json()
            assert server["server"]["addresses"] == {}
    finally:
        for got in made:
            api("delete", f"/servers/{got.json()['server']['id']}")


def test_scheduler_hints_are_validated_and_kept(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud)
    for hints in (
        {"group": "not-a-uuid"},
        {"same_host": ["x"]},
        {"different_host": 5},
        {"query": 3},
        {"cidr": "10.0.0.0/8"},
        {"build_near_host_ip": "nope"},
    ):
        body = boot_body(image) | {"os:scheduler_hints": hints}
        assert api("post", "/servers", ver=LATEST, json=body).status_code == 400, hints
    other = str(uuid.uuid4())
    body = boot_body(image) | {"os:scheduler_hints": {"different_host": [other], "custom": "x"}}
    made = api("post", "/servers", ver=LATEST, json=body)
    assert made.status_code == 202, made.text
    api("delete", f"/servers/{made.json()['server']['id']}")
    # openstacksdk (and so the CLI's --hint) sends the extension's name for the hints.
    made = api.conn.compute.create_server(
        name=unique("hinted"),
        image_id=image,
        flavor_id="1",
        networks="none",
        scheduler_hints={"same_host": other},
    )
    try:
        assert stored_hints(cloud, made.id) == {"same_host": other}
    finally:
        api("delete", f"/servers/{made.id}")


def stored_hints(cloud: RunningCloud, server_id: str) -> Any:
    async def fetch() -> Any:
        conn = await asyncpg.connect(dsn_for(cloud.database))
        try:
            raw = await conn.fetchval(
                "SELECT scheduler_hints::text FROM cmp_instances WHERE id = $1", server_id
            )
            return json.loads(raw)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_hostname_from_2_90(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud)
    assert (
        api("post", "/servers", ver="2.89", json=boot_body(image, hostname="web-1")).status_code
        == 400
    )
    assert (
        api("post", "/servers", ver="2.90", json=boot_body(image, hostname="-bad")).status_code
        == 400
    )
    many = boot_body(image, hostname="web", max_count=2)
    assert api("post", "/servers", ver="2.90", json=many).status_code == 400
    made = api("post", "/servers", ver="2.90", json=boot_body(image, hostname="web-1"))
    server_id = made.json()["server"]["id"]
    try:
        shown = api("get", f"/servers/{server_id}", ver="2.90").json()["server"]
        assert shown["OS-EXT-SRV-ATTR:hostname"] == "web-1"
        put = api(
            "put", f"/servers/{server_id}", ver="2.90", json={"server": {"hostname": "web-2"}}
        )
        assert (
            put.status_code == 200 and put.json()["server"]["OS-EXT-SRV-ATTR:hostname"] == "web-2"
        )
        put = api(
            "put", f"/servers/{server_id}", ver="2.89", json={"server": {"hostname": "web-3"}}
        )
        assert put.status_code == 400
    finally:
        api("delete", f"/servers/{server_id}")


def test_cli_lock_and_unlock(cloud: RunningCloud, image: str, host: str) -> None:
    server = create(cloud, image, unique("lockme"), as_=DEMO)["id"]
    try:
        cloud.openstack("server", "lock", "--reason", "maintenance", server, cloud=DEMO)
        shown = cloud.openstack("server", "show", server, cloud=DEMO)
        assert shown["locked"] is True and shown["locked_reason"] == "maintenance"
        assert "is locked" in cloud.fails("server", "stop", server, cloud=DEMO)
        assert "is locked" in cloud.fails("server", "delete", server, cloud=DEMO)
        assert "is locked" in cloud.fails("server", "set", "--property", "a=b", server, cloud=DEMO)
        locked = cloud.openstack("server", "list", "--locked", cloud=DEMO)
        assert server in {r["ID"] for r in locked}
        assert server not in {
            r["ID"] for r in cloud.openstack("server", "list", "--unlocked", cloud=DEMO)
        }
        cloud.openstack("server", "unlock", server, cloud=DEMO)
        assert cloud.openstack("server", "show", server, cloud=DEMO)["locked"] is False

        # An admin's lock: the member may not lift it, but the admin overrides it.
        cloud.openstack("server", "lock", server, cloud=ADMIN)
        assert cloud.fails("server", "unlock", server, cloud=DEMO)
        cloud.openstack("server", "stop", server, cloud=ADMIN)  # admins pass a lock
        wait_status(cloud, server, "SHUTOFF")
        cloud.openstack("server", "unlock", server, cloud=ADMIN)
        kinds = event_kinds(cloud, server)
        assert kinds.count("compute.instance.locked") == 2
        assert kinds.count("compute.instance.unlocked") == 2
    finally:
        cloud.run_cli("server", "unlock", server, cloud=ADMIN)
        cloud.run_cli("server", "delete", server, cloud=DEMO)


def test_lock_body_and_status_codes(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud)
    made = api("post", "/servers", ver=LATEST, json=boot_body(image))
    server_id = made.json()["server"]["id"]
    path = f"/servers/{server_id}/action"
    try:
        assert (
            api("post", path, ver="2.73", json={"lock": {"locked_reason": ""}}).status_code == 400
        )
        assert api("post", path, ver="2.73", json={"lock": {"bogus": 1}}).status_code == 400
        assert api("post", path, ver="2.72", json={"lock": {"bogus": 1}}).status_code == 202
        shown = api("get", f"/servers/{server_id}", ver="2.73").json()["server"]
        assert shown["locked"] is True and shown["locked_reason"] is None
        assert api("post", path, ver="2.73", json={"lock": None}).status_code == 202  # owner again
        refused = api("delete", f"/servers/{server_id}")
        assert refused.status_code == 409 and f"Instance {server_id} is locked" in refused.text
        assert api("post", path, json={"unlock": None}).status_code == 202
        assert api("post", path, json={"unlock": None}).status_code == 202  # already unlocked
        missing = f"/servers/{uuid.uuid4()}/action"
        assert api("post", missing, json={"lock": None}).status_code == 404
    finally:
        api("delete", f"/servers/{server_id}")


@pytest.fixture(scope="module")
def listed_servers(cloud: RunningCloud, image: str, host: str) -> Any:
    api = Api(cloud)
    prefix = unique("ls")
    body = boot_body(image, name=prefix, min_count=3, max_count=3)
    assert api("post", "/servers", ver=LATEST, json=body).status_code == 202
    rows = api("get", f"/servers?name=^{prefix}-").json()["servers"]
    yield prefix, [r["id"] for r in rows]
    for r in rows:
        api("delete", f"/servers/{r['id']}")


def test_list_bad_input(cloud: RunningCloud, listed_servers: Any) -> None:
    api = Api(cloud)
    for query, ver in (
        ("limit=-1", "2.1"),
        ("limit=abc", "2.1"),
        ("changes-since=garbage", "2.1"),
        ("changes-before=garbage", "2.66"),
        ("name=(", "2.1"),
        ("bogus=1", "2.75"),
        ("sort_key=bogus", "2.1"),
        ("sort_key=display_name&sort_dir=sideways", "2.1"),
        ("status=SLEEPING", "2.38"),
        ("locked=perhaps", "2.73"),
        (f"marker={uuid.uuid4()}", "2.1"),
    ):
        got = api("get", f"/servers/detail?{query}", ver=ver)
        assert got.status_code == 400, (query, got.text)
    assert api("get", "/servers?all_tenants=1").status_code == 403
    assert api("get", "/servers?bogus=1", ver="2.74").status_code == 200
    assert api("get", "/servers/not-a-uuid").status_code == 404
    assert api("get", "/servers?ip=10.0.0.1").json()["servers"] == []


def test_list_sort_and_pages(cloud: RunningCloud, listed_servers: Any) -> None:
    api = Api(cloud)
    prefix, _ = listed_servers
    query = f"name=^{prefix}-&sort_key=display_name&sort_dir=asc"
    first = api("get", f"/servers/detail?{query}&limit=2").json()
    assert [s["name"] for s in first["servers"]] == [f"{prefix}-1", f"{prefix}-2"]
    next_href = first["servers_links"][0]["href"]
    assert "marker=" in next_href
    rest = api("get", next_href[next_href.index("/servers") :]).json()
    assert [s["name"] for s in rest["servers"]] == [f"{prefix}-3"]
    desc = api("get", f"/servers?name=^{prefix}-&sort_key=display_name").json()
    assert [s["name"] for s in desc["servers"]] == [f"{prefix}-3", f"{prefix}-2", f"{prefix}-1"]
    # Mixed directions, one server per page: the pages still cover every server once.
    mixed = f"name=^{prefix}-&sort_key=image_ref&sort_dir=asc&sort_key=display_name&sort_dir=desc"
    seen, path = [], f"/servers?{mixed}&limit=1"
    while path:
        got = api("get", path).json()
        seen += [s["name"] for s in got["servers"]]
        links = got.get("servers_links") or []
        path = links[0]["href"][links[0]["href"].index("/servers") :] if links else ""
    assert seen == [f"{prefix}-3", f"{prefix}-2", f"{prefix}-1"]


def test_changes_since_includes_deleted_servers(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud, ADMIN)
    before = api("get", "/servers/detail?limit=1", ver=LATEST)
    made = api("post", "/servers", ver=LATEST, json=boot_body(image))
    server_id = made.json()["server"]["id"]
    since = made.headers.get("Date")
    assert before.status_code == 200 and since
    cloud.openstack("server", "delete", "--wait", server_id)
    window = api("get", "/servers/detail?changes-since=2000-01-01T00:00:00Z", ver=LATEST).json()
    deleted = [s for s in window["servers"] if s["id"] == server_id]
    assert deleted and deleted[0]["status"] == "DELETED"
    assert server_id not in {s["id"] for s in api("get", "/servers").json()["servers"]}
    gone = api("get", "/servers?deleted=true", ver=LATEST).json()["servers"]
    assert server_id in {s["id"] for s in gone}
    future = api("get", "/servers?changes-before=2000-01-01T00:00:00Z", ver="2.66").json()
    assert future["servers"] == []


def test_cli_list_long_filters(cloud: RunningCloud, listed_servers: Any, image: str) -> None:
    prefix, ids = listed_servers
    rows = cloud.openstack(
        "server", "list", "--long", "--name", f"^{prefix}-", "--image", image,
        "--flavor", "m1.tiny", cloud=DEMO,
    )  # fmt: skip
    assert {r["ID"] for r in rows} == set(ids)
    assert (
        cloud.openstack("server", "list", "--name", f"^{prefix}-", "--status", "ERROR", cloud=DEMO)
        == []
    )
    assert (
        cloud.openstack(
            "server", "list", "--name", f"^{prefix}-", "--flavor", "m1.small", cloud=DEMO
        )
        == []
    )
    everyone = cloud.openstack("server", "list", "--all-projects", "--name", f"^{prefix}-")
    assert {r["ID"] for r in everyone} == set(ids)
