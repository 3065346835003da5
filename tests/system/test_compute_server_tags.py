"""Server tags (Nova 2.26+): the CLI's ``--tag`` options and the ``/servers/{id}/tags`` API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import dsn_for
from tests.system.conftest import DEMO, RunningCloud, unique
from tests.system.test_compute_servers import create

TAGS = "2.26"


def event_kinds(cloud: RunningCloud, server_id: str) -> list[str]:
    async def fetch() -> list[str]:
        conn = await asyncpg.connect(dsn_for(cloud.database))
        try:
            rows = await conn.fetch(
                "SELECT kind FROM events WHERE stream_id = $1 ORDER BY seq", f"instance:{server_id}"
            )
            return [r["kind"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


class Api:
    """Raw compute calls at a microversion, through openstacksdk's session (no raising)."""

    def __init__(self, cloud: RunningCloud, who: str = DEMO) -> None:
        self.conn = cloud.sdk(who)

    def __call__(self, method: str, path: str, ver: str = TAGS, json: Any = None) -> Any:
        kw: dict[str, Any] = {"microversion": ver, "raise_exc": False}
        if json is not None:
            kw["json"] = json
        return getattr(self.conn.compute, method)(path, **kw)


@pytest.fixture(scope="module")
def server(cloud: RunningCloud, image: str, host: str) -> Iterator[str]:
    made = create(cloud, image, unique("tagged"), as_=DEMO)
    yield str(made["id"])
    cloud.run_cli("server", "delete", made["id"], cloud=DEMO)


def test_cli_tags_set_unset_and_list_filters(cloud: RunningCloud, image: str, host: str) -> None:
    name = unique("tagvm")
    made = cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.tiny", "--tag", "red",
        "--tag", "blue", "--wait", name, cloud=DEMO,
    )  # fmt: skip
    other = create(cloud, image, unique("plain"), as_=DEMO)
    try:
        assert sorted(made["tags"]) == ["blue", "red"]
        cloud.openstack("server", "set", "--tag", "green", made["id"], cloud=DEMO)
        cloud.openstack("server", "unset", "--tag", "red", made["id"], cloud=DEMO)
        shown = cloud.openstack("server", "show", made["id"], cloud=DEMO)
        assert sorted(shown["tags"]) == ["blue", "green"]

        def listed(*flags: str) -> set[str]:
            rows = cloud.openstack("server", "list", *flags, cloud=DEMO)
            return {r["ID"] for r in rows}

        assert listed("--tags", "blue,green") == {made["id"]}
        assert listed("--tags", "blue,red") == set()
        assert made["id"] in listed("--not-tags", "red")
        assert made["id"] not in listed("--not-tags", "blue")
        assert other["id"] in listed("--not-tags", "blue")
        kinds = event_kinds(cloud, made["id"])
        assert kinds.count("compute.instance.tags_changed") == 2
    finally:
        cloud.run_cli("server", "delete", made["id"], other["id"], cloud=DEMO)


def test_tags_api(cloud: RunningCloud, server: str) -> None:
    api = Api(cloud)
    base = f"/servers/{server}/tags"
    assert api("get", base).json() == {"tags": []}
    added = api("put", f"{base}/alpha")
    assert added.status_code == 201 and added.headers["Location"].endswith(f"{base}/alpha")
    assert api("put", f"{base}/alpha").status_code == 204  # had it already
    assert api("get", f"{base}/alpha").status_code == 204
    assert api("get", f"{base}/beta").status_code == 404
    replaced = api("put", base, json={"tags": ["x", "y", "x"]})
    assert replaced.status_code == 200 and replaced.json() == {"tags": ["x", "y"]}
    assert api("get", f"/servers/{server}", ver="2.26").json()["server"]["tags"] == ["x", "y"]
    assert api("delete", f"{base}/x").status_code == 204
    assert api("delete", f"{base}/x").status_code == 404
    assert api("delete", base).status_code == 204
    assert api("get", base).json() == {"tags": []}


def test_tags_need_2_26(cloud: RunningCloud, server: str) -> None:
    api = Api(cloud)
    assert api("get", f"/servers/{server}/tags", ver="2.25").status_code == 404
    assert api("put", f"/servers/{server}/tags/a", ver="2.25").status_code == 404
    assert "tags" not in api("get", f"/servers/{server}", ver="2.25").json()["server"]


def test_bad_tags_are_refused(cloud: RunningCloud, server: str) -> None:
    api = Api(cloud)
    base = f"/servers/{server}/tags"
    assert api("put", f"{base}/a,b").status_code == 400
    assert api("put", f"{base}/{'t' * 61}").status_code == 400
    assert api("put", base, json={"tags": ["ok", "no/slash"]}).status_code == 400
    assert api("put", base, json={"tags": [""]}).status_code == 400
    assert api("put", base, json={"tags": [f"t{i}" for i in range(51)]}).status_code == 400
    assert api("put", base, json={"tags": "notalist"}).status_code == 400
    full = api("put", base, json={"tags": [f"t{i}" for i in range(50)]})
    assert full.status_code == 200 and len(full.json()["tags"]) == 50
    refused = api("put", f"{base}/one-more")
    assert refused.status_code == 400 and "limit 50" in refused.text
    assert api("delete", base).status_code == 204
    missing = "00000000-0000-0000-0000-000000000000"
    assert api("get", f"/servers/{missing}/tags").status_code == 404
    assert api("put", f"/servers/{missing}/tags/a").status_code == 404


def test_tags_in_the_boot_request_from_2_52(cloud: RunningCloud, image: str, host: str) -> None:
    api = Api(cloud)
    body = {"server": {"name": unique("bt"), "imageRef": image, "flavorRef": "1", "tags": ["a"]}}
    assert api("post", "/servers", ver="2.51", json=body).status_code == 400
    body["server"]["tags"] = ["a/b"]
    assert api("post", "/servers", ver="2.52", json=body).status_code == 400
    body["server"]["tags"] = ["a", "b"]
    body["server"]["networks"] = "none"  # required from 2.37
    made = api("post", "/servers", ver="2.52", json=body)
    assert made.status_code == 202, made.text
    server_id = made.json()["server"]["id"]
    try:
        got = api("get", f"/servers/{server_id}/tags").json()
        assert got == {"tags": ["a", "b"]}
    finally:
        api("delete", f"/servers/{server_id}")


def test_tags_cannot_change_on_a_server_in_error(
    cloud: RunningCloud, image: str, host: str
) -> None:
    flavor = unique("huge")
    cloud.openstack("flavor", "create", "--ram", "64", "--disk", "900000", "--vcpus", "1", flavor)
    api = Api(cloud, "aiostack-admin")
    made = api(
        "post",
        "/servers",
        json={"server": {"name": unique("err"), "imageRef": image, "flavorRef": flavor}},
    )
    assert made.status_code == 202, made.text
    server_id = made.json()["server"]["id"]
    try:
        deadline = time.monotonic() + 30
        while api("get", f"/servers/{server_id}").json()["server"]["status"] != "ERROR":
            assert time.monotonic() < deadline, "the oversized server never failed"
            time.sleep(0.2)
        refused = api("put", f"/servers/{server_id}/tags/a")
        assert refused.status_code == 409 and "vm_state error" in refused.text
        assert api("get", f"/servers/{server_id}/tags").status_code == 200
    finally:
        api("delete", f"/servers/{server_id}")
        cloud.run_cli("flavor", "delete", flavor)
