"""Which server fields appear at which compute microversion, as Nova's server view shows them
(``nova/api/openstack/compute/views/servers.py``), through requests and the real CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.system.conftest import DEMO, RunningCloud, unique
from tests.system.test_compute_servers import create

# Present for everyone at every version (2.1): Nova's base view plus its v2.0-compatible extensions.
BASE = {
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "metadata",
    "hostId",
    "image",
    "flavor",
    "created",
    "updated",
    "addresses",
    "accessIPv4",
    "accessIPv6",
    "links",
    "OS-DCF:diskConfig",
    "progress",  # an ACTIVE server
    "OS-EXT-AZ:availability_zone",
    "config_drive",
    "key_name",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
    "security_groups",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:power_state",
    "os-extended-volumes:volumes_attached",
}
ADMIN_21 = {
    "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:instance_name",
    "OS-EXT-SRV-ATTR:hypervisor_hostname",
}
ADMIN_23 = {
    "OS-EXT-SRV-ATTR:reservation_id",
    "OS-EXT-SRV-ATTR:launch_index",
    "OS-EXT-SRV-ATTR:hostname",
    "OS-EXT-SRV-ATTR:kernel_id",
    "OS-EXT-SRV-ATTR:ramdisk_id",
    "OS-EXT-SRV-ATTR:root_device_name",
    "OS-EXT-SRV-ATTR:user_data",
}


def expected(ver: tuple[int, int], *, admin: bool, show: bool) -> set[str]:
    keys = set(BASE)
    if admin:
        keys |= ADMIN_21
        if ver >= (2, 3):
            keys |= ADMIN_23
        if ver >= (2, 16):
            keys.add("host_status")
    if ver >= (2, 9):
        keys.add("locked")
    if ver >= (2, 19):
        keys.add("description")
    if ver >= (2, 26):
        keys.add("tags")
    if ver >= (2, 63):
        keys.add("trusted_image_certificates")
    if show and ver >= (2, 71):
        keys.add("server_groups")
    if ver >= (2, 73):
        keys.add("locked_reason")
    if ver >= (2, 90):
        keys.add("OS-EXT-SRV-ATTR:hostname")
    return keys


VERSIONS = [
    (2, 1),
    (2, 2),
    (2, 3),
    (2, 8),
    (2, 9),
    (2, 15),
    (2, 16),
    (2, 18),
    (2, 19),
    (2, 25),
    (2, 26),
    (2, 46),
    (2, 47),
    (2, 62),
    (2, 63),
    (2, 70),
    (2, 71),
    (2, 72),
    (2, 73),
    (2, 89),
    (2, 90),
    (2, 92),
]


@pytest.fixture(scope="module")
def servers(cloud: RunningCloud, image: str, host: str) -> Iterator[dict[str, str]]:
    """One ACTIVE server in the admin's project and one in the member's."""
    admins = create(cloud, image, unique("vm"))
    demos = create(cloud, image, unique("vm"), as_=DEMO)
    yield {"admin": admins["id"], "member": demos["id"]}
    cloud.openstack("server", "delete", admins["id"])
    cloud.openstack("server", "delete", demos["id"], cloud=DEMO)


_TOKENS: dict[str, str] = {}


def _get(cloud: RunningCloud, who: str, path: str, ver: tuple[int, int]) -> Any:
    if who not in _TOKENS:
        _TOKENS[who] = cloud.openstack("token", "issue", cloud=who)["id"]
    token = _TOKENS[who]
    got = requests.get(
        f"{cloud.url}/compute/v2.1{path}",
        headers={"X-Auth-Token": token, "OpenStack-API-Version": f"compute {ver[0]}.{ver[1]}"},
        timeout=10,
    )
    assert got.status_code == 200, got.text
    return got.json()


@pytest.mark.parametrize("ver", VERSIONS, ids=lambda v: f"{v[0]}.{v[1]}")
@pytest.mark.parametrize("who", ["admin", "member"])
def test_show_fields_per_microversion(
    cloud: RunningCloud, servers: dict[str, str], who: str, ver: tuple[int, int]
) -> None:
    as_ = "aiostack-admin" if who == "admin" else DEMO
    server = _get(cloud, as_, f"/servers/{servers[who]}", ver)["server"]
    assert set(server) == expected(ver, admin=who == "admin", show=True)
    listed = _get(cloud, as_, "/servers/detail", ver)["servers"]
    entry = next(s for s in listed if s["id"] == servers[who])
    assert set(entry) == expected(ver, admin=who == "admin", show=False)
    if ver >= (2, 47):
        assert set(server["flavor"]) == {
            "vcpus",
            "ram",
            "disk",
            "ephemeral",
            "swap",
            "original_name",
            "extra_specs",
        }
    else:
        assert set(server["flavor"]) == {"id", "links"}


def test_field_defaults_at_the_latest_version(cloud: RunningCloud, servers: dict[str, str]) -> None:
    server = _get(cloud, DEMO, f"/servers/{servers['member']}", (2, 92))["server"]
    assert server["locked"] is False
    assert server["locked_reason"] is None
    assert server["description"] is None
    assert server["tags"] == []
    assert server["trusted_image_certificates"] is None
    assert server["server_groups"] == []
    assert server["OS-EXT-SRV-ATTR:hostname"] == server["name"]
    assert server["os-extended-volumes:volumes_attached"] == []
    admin = _get(cloud, "aiostack-admin", f"/servers/{servers['admin']}", (2, 92))["server"]
    assert admin["host_status"] == "UP"
    assert admin["OS-EXT-SRV-ATTR:launch_index"] == 0


def test_cli_show_at_old_and_new_versions(cloud: RunningCloud, servers: dict[str, str]) -> None:
    """The CLI prints every attribute it knows; the ones the server did not send are empty."""

    def show(ver: str) -> dict[str, Any]:
        shown: dict[str, Any] = cloud.openstack(
            "server", "show", servers["admin"], extra_env={"OS_COMPUTE_API_VERSION": ver}
        )
        return shown

    old, new = show("2.1"), show("2.92")
    assert old["OS-EXT-SRV-ATTR:host"] and new["OS-EXT-SRV-ATTR:host"]
    for field in ("locked", "host_status", "OS-EXT-SRV-ATTR:launch_index"):
        assert old.get(field) is None, field
    assert new["locked"] is False
    assert new["tags"] == []
    assert new["host_status"] == "UP"
    assert new["OS-EXT-SRV-ATTR:launch_index"] == 0
    assert new["flavor"]["original_name"] == "m1.tiny"
    assert "original_name" not in old["flavor"]


def _call(
    cloud: RunningCloud, method: str, path: str, body: Any = None, who: str = DEMO
) -> requests.Response:
    if who not in _TOKENS:
        _TOKENS[who] = cloud.openstack("token", "issue", cloud=who)["id"]
    return requests.request(
        method,
        f"{cloud.url}/compute/v2.1{path}",
        json=body,
        headers={"X-Auth-Token": _TOKENS[who]},
        timeout=10,
    )


def test_metadata_through_the_cli(cloud: RunningCloud, servers: dict[str, str]) -> None:
    server = servers["member"]
    cloud.openstack("server", "set", "--property", "a=1", "--property", "b=2", server, cloud=DEMO)
    shown = cloud.openstack("server", "show", server, cloud=DEMO)
    assert shown["properties"] == {"a": "1", "b": "2"}
    cloud.openstack("server", "unset", "--property", "a", server, cloud=DEMO)
    assert cloud.openstack("server", "show", server, cloud=DEMO)["properties"] == {"b": "2"}
    assert "No Server found" in cloud.fails(
        "server", "set", "--property", "x=y", servers["admin"], cloud=DEMO
    )


def test_metadata_api(cloud: RunningCloud, servers: dict[str, str]) -> None:
    base = f"/servers/{servers['member']}/metadata"
    got = _call(cloud, "PUT", base, {"metadata": {"k": "v", "z": "1"}})
    assert got.status_code == 200 and got.json() == {"metadata": {"k": "v", "z": "1"}}
    got = _call(cloud, "POST", base, {"metadata": {"k": "w", "n": "2"}})
    assert got.json() == {"metadata": {"k": "w", "z": "1", "n": "2"}}
    assert _call(cloud, "GET", base).json() == {"metadata": {"k": "w", "z": "1", "n": "2"}}
    assert _call(cloud, "GET", f"{base}/z").json() == {"meta": {"z": "1"}}
    assert _call(cloud, "GET", f"{base}/nope").status_code == 404
    got = _call(cloud, "PUT", f"{base}/q", {"meta": {"q": "9"}})
    assert got.status_code == 200 and got.json() == {"meta": {"q": "9"}}
    assert _call(cloud, "PUT", f"{base}/q", {"meta": {"r": "9"}}).status_code == 400
    assert _call(cloud, "PUT", f"{base}/q", {"meta": {"q": "1", "r": "2"}}).status_code == 400
    assert _call(cloud, "DELETE", f"{base}/q").status_code == 204
    assert _call(cloud, "DELETE", f"{base}/q").status_code == 404
    too_many = {f"k{i}": "v" for i in range(129)}
    assert _call(cloud, "PUT", base, {"metadata": too_many}).status_code == 403
    assert _call(cloud, "PUT", base, {"metadata": {"x" * 256: "v"}}).status_code == 400
    assert _call(cloud, "GET", f"/servers/{servers['admin']}/metadata").status_code == 404
    assert _call(cloud, "PUT", base, {"metadata": {}}).json() == {"metadata": {}}


UPDATE_BASE = {
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "metadata",
    "hostId",
    "image",
    "flavor",
    "created",
    "updated",
    "addresses",
    "accessIPv4",
    "accessIPv6",
    "links",
    "OS-DCF:diskConfig",
    "progress",
}


def test_rename_through_the_cli_and_the_api(cloud: RunningCloud, servers: dict[str, str]) -> None:
    server = servers["member"]
    new_name = unique("renamed")
    cloud.openstack("server", "set", "--name", new_name, server, cloud=DEMO)
    assert cloud.openstack("server", "show", server, cloud=DEMO)["name"] == new_name
    token = _TOKENS.get(DEMO) or cloud.openstack("token", "issue", cloud=DEMO)["id"]

    def put(ver: str, body: Any) -> requests.Response:
        return requests.put(
            f"{cloud.url}/compute/v2.1/servers/{server}",
            json=body,
            headers={"X-Auth-Token": token, "OpenStack-API-Version": f"compute {ver}"},
            timeout=10,
        )

    got = put("2.1", {"server": {"name": "a"}})
    assert got.status_code == 200, got.text
    assert set(got.json()["server"]) == UPDATE_BASE and got.json()["server"]["name"] == "a"
    got = put("2.74", {"server": {"name": "b"}})
    assert set(got.json()["server"]) == UPDATE_BASE | {
        "locked",
        "locked_reason",
        "description",
        "tags",
        "trusted_image_certificates",
    }
    got = put("2.75", {"server": {"name": "c"}})
    assert set(got.json()["server"]) == expected((2, 75), admin=False, show=True)
    assert put("2.1", {"server": {"name": ""}}).status_code == 400
    assert put("2.1", {"server": {"bogus": 1}}).status_code == 400
    assert cloud.fails("server", "set", "--name", "x", servers["admin"], cloud=DEMO)
