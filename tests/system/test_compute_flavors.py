"""Nova v2.1 front against a running aiostack: discovery, microversions, flavors, keypairs.

Flavors and keypairs through the real ``openstack`` CLI; headers, faults and the paths the CLI
does not take (server-side key generation, 406, bad bodies) with plain requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud.compute.api.microversion import MAX_VERSION
from tests.system.conftest import RunningCloud, unique

MAX = f"{MAX_VERSION[0]}.{MAX_VERSION[1]}"


def token(cloud: RunningCloud, name: str = "aiostack-admin") -> str:
    return str(cloud.sdk(name).auth_token)


def nova(
    cloud: RunningCloud,
    method: str,
    path: str,
    tok: str | None,
    body: Any = None,
    version: str | None = None,
) -> requests.Response:
    headers = {"X-Auth-Token": tok} if tok else {}
    if version:
        headers["OpenStack-API-Version"] = f"compute {version}"
    return requests.request(
        method, cloud.url + "/compute/v2.1" + path, json=body, headers=headers, timeout=10
    )


def test_discovery(cloud: RunningCloud) -> None:
    for path in ("/compute", "/compute/"):
        resp = requests.get(cloud.url + path, timeout=10)
        assert resp.status_code == 200
        versions = resp.json()["versions"]
        assert [(v["id"], v["status"]) for v in versions] == [
            ("v2.0", "SUPPORTED"),
            ("v2.1", "CURRENT"),
        ]
        assert versions[1]["version"] == MAX and versions[1]["min_version"] == "2.1"
        assert versions[1]["links"][0]["href"] == cloud.url + "/compute/v2.1/"
    for path in ("/compute/v2.1", "/compute/v2.1/"):
        resp = requests.get(cloud.url + path, timeout=10)
        assert resp.status_code == 200
        assert resp.json()["version"]["media-types"][0]["type"] == (
            "application/vnd.openstack.compute+json;version=2.1"
        )
        assert resp.headers["OpenStack-API-Version"] == "compute 2.1"
        assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.1"
        assert resp.headers["x-compute-request-id"] == resp.headers["X-Openstack-Request-Id"]


def test_microversion_headers_and_406(cloud: RunningCloud) -> None:
    tok = token(cloud)
    resp = nova(cloud, "GET", "/flavors", tok)
    assert resp.headers["OpenStack-API-Version"] == "compute 2.1"
    assert "OpenStack-API-Version" in resp.headers["Vary"]
    assert {"0", "1", "2", "3"} <= {f["id"] for f in resp.json()["flavors"]}
    assert "description" not in resp.json()["flavors"][0]
    resp = nova(cloud, "GET", "/flavors", tok, version="latest")
    assert resp.headers["OpenStack-API-Version"] == f"compute {MAX}"
    assert resp.json()["flavors"][0]["description"] is None
    resp = nova(cloud, "GET", "/flavors", tok, version="2.999")
    assert resp.status_code == 406
    assert resp.json() == {
        "computeFault": {
            "code": 406,
            "message": f"Version 2.999 is not supported by the API. Minimum is 2.1 and "
            f"maximum is {MAX}.",
        }
    }
    assert resp.headers["OpenStack-API-Version"] == "compute 2.999"
    assert resp.headers["x-compute-request-id"]
    resp = nova(cloud, "GET", "/flavors", tok, version="two")
    assert resp.status_code == 400 and "badRequest" in resp.json()
    resp = nova(cloud, "GET", "/flavors/nope", tok)
    assert resp.status_code == 404 and "itemNotFound" in resp.json()
    assert resp.headers["OpenStack-API-Version"] == "compute 2.1"


def test_flavor_cli_lifecycle(cloud: RunningCloud) -> None:
    name = unique("fl")
    created = cloud.openstack(
        "flavor", "create", name, "--ram", "256", "--vcpus", "2", "--disk", "3",
        "--description", "small one", "--property", "hw:cpu_policy=shared",
    )  # fmt: skip
    assert created["ram"] == 256 and created["vcpus"] == 2 and created["disk"] == 3
    assert created["description"] == "small one"
    shown = cloud.openstack("flavor", "show", name)
    assert shown["id"] == created["id"] and shown["properties"] == {"hw:cpu_policy": "shared"}
    cloud.openstack("flavor", "set", name, "--property", "color=blue", "--description", "d2")
    shown = cloud.openstack("flavor", "show", name)
    assert shown["properties"] == {"hw:cpu_policy": "shared", "color": "blue"}
    assert shown["description"] == "d2"
    cloud.openstack("flavor", "unset", name, "--property", "color")
    assert cloud.openstack("flavor", "show", name)["properties"] == {"hw:cpu_policy": "shared"}
    names = [f["Name"] for f in cloud.openstack("flavor", "list")]
    assert name in names and "m1.nano" in names
    cloud.openstack("flavor", "delete", name)
    assert name not in [f["Name"] for f in cloud.openstack("flavor", "list")]
    cloud.fails("flavor", "show", name)


def test_private_flavor_access(cloud: RunningCloud) -> None:
    name = unique("priv")
    project = cloud.sdk("aiostack").current_project_id

    def member_sees() -> bool:
        return name in [f["Name"] for f in cloud.openstack("flavor", "list", cloud="aiostack")]

    created = cloud.openstack(
        "flavor", "create", name, "--ram", "128", "--vcpus", "1", "--private", "--project", project
    )  # fmt: skip
    assert created["os-flavor-access:is_public"] is False
    assert name not in [f["Name"] for f in cloud.openstack("flavor", "list")]
    assert name in [f["Name"] for f in cloud.openstack("flavor", "list", "--all")]
    assert name in [f["Name"] for f in cloud.openstack("flavor", "list", "--private")]
    assert member_sees()
    assert project in str(cloud.openstack("flavor", "show", name).get("access_project_ids"))
    cloud.openstack("flavor", "unset", name, "--project", project)
    assert not member_sees()
    assert cloud.fails("flavor", "show", name, cloud="aiostack")
    cloud.openstack("flavor", "set", name, "--project", project)
    assert member_sees()
    cloud.openstack("flavor", "delete", name)


def test_flavor_faults(cloud: RunningCloud) -> None:
    admin, member = token(cloud), token(cloud, "aiostack")
    body = {"flavor": {"name": unique("f"), "ram": 64, "vcpus": 1, "disk": 0}}
    resp = nova(cloud, "POST", "/flavors", member, body)
    assert resp.status_code == 403 and "forbidden" in resp.json()
    for bad in (
        {"flavor": {"name": "x", "ram": 0, "vcpus": 1, "disk": 0}},
        {"flavor": {"name": "x", "ram": "lots", "vcpus": 1, "disk": 0}},
        {"flavor": {"name": "x", "vcpus": 1, "disk": 0}},
        {"flavor": {"name": " x", "ram": 1, "vcpus": 1, "disk": 0}},
        {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "bogus": 1}},
        {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "rxtx_factor": -1}},
        {"flavor": "x"},
        {"nope": 1},
    ):
        resp = nova(cloud, "POST", "/flavors", admin, bad)
        assert resp.status_code == 400 and "badRequest" in resp.json(), bad
    resp = nova(cloud, "POST", "/flavors", admin, body)
    assert resp.status_code == 200
    flavor = resp.json()["flavor"]
    assert flavor["swap"] == "" and flavor["OS-FLV-EXT-DATA:ephemeral"] == 0
    assert nova(cloud, "POST", "/flavors", admin, body).status_code == 409
    assert (
        nova(cloud, "GET", f"/flavors/{flavor['id']}", admin, version="2.75").json()["flavor"][
            "swap"
        ]
        == 0
    )
    resp = nova(cloud, "GET", "/flavors/detail?limit=1&sort_key=name&sort_dir=asc", admin)
    assert len(resp.json()["flavors"]) == 1 and "flavors_links" in resp.json()
    assert nova(cloud, "GET", "/flavors?marker=nope", admin).status_code == 400
    assert nova(cloud, "GET", "/flavors?minRam=x", admin).status_code == 400
    assert nova(cloud, "GET", "/flavors?sort_key=x", admin).status_code == 400
    spec = {"extra_specs": {"hw:cpu_policy": "bogus"}}
    path = f"/flavors/{flavor['id']}/os-extra_specs"
    assert nova(cloud, "POST", path, admin, spec, version="2.86").status_code == 400
    assert nova(cloud, "POST", path, admin, spec, version="2.85").status_code == 200
    assert nova(cloud, "DELETE", f"/flavors/{flavor['id']}", member).status_code == 403
    assert nova(cloud, "DELETE", f"/flavors/{flavor['id']}", admin).status_code == 202
    assert nova(cloud, "DELETE", f"/flavors/{flavor['id']}", admin).status_code == 404


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return raw.decode()


def test_keypair_cli(cloud: RunningCloud, tmp_path: Path) -> None:
    generated, imported = unique("kp"), unique("kp")
    created = cloud.openstack("keypair", "create", generated, "--private-key", str(tmp_path / "k"))
    assert created["name"] == generated and created["fingerprint"]
    pub = tmp_path / "id.pub"
    pub.write_text(_public_key() + "\n")
    created = cloud.openstack("keypair", "create", imported, "--public-key", str(pub))
    shown = cloud.openstack("keypair", "show", imported)
    assert shown["fingerprint"] == created["fingerprint"] and shown["type"] == "ssh"
    names = [k["Name"] for k in cloud.openstack("keypair", "list")]
    assert generated in names and imported in names
    assert "already exists" in cloud.fails("keypair", "create", imported, "--public-key", str(pub))
    cloud.openstack("keypair", "delete", generated, imported)
    assert imported not in [k["Name"] for k in cloud.openstack("keypair", "list")]


def test_keypair_requests(cloud: RunningCloud) -> None:
    tok = token(cloud, "aiostack")
    name = unique("gen")
    resp = nova(cloud, "POST", "/os-keypairs", tok, {"keypair": {"name": name}}, version="2.91")
    assert resp.status_code == 201
    kp = resp.json()["keypair"]
    assert kp["private_key"].startswith("-----BEGIN") and kp["type"] == "ssh"
    assert nova(cloud, "GET", f"/os-keypairs/{name}", tok).json()["keypair"]["id"] > 0
    resp = nova(cloud, "POST", "/os-keypairs", tok, {"keypair": {"name": "x"}}, version="2.92")
    assert resp.status_code == 400
    bad = {"keypair": {"name": unique("b"), "public_key": "ssh-rsa garbage"}}
    resp = nova(cloud, "POST", "/os-keypairs", tok, bad)
    assert resp.status_code == 400 and "Keypair data is invalid" in resp.text
    dotted = {"keypair": {"name": "a.b@c", "public_key": _public_key()}}
    assert nova(cloud, "POST", "/os-keypairs", tok, dotted, version="2.2").status_code == 400
    assert nova(cloud, "POST", "/os-keypairs", tok, dotted, version="2.92").status_code == 201
    listed = nova(cloud, "GET", "/os-keypairs?limit=1", tok, version="2.35").json()
    assert len(listed["keypairs"]) == 1 and "keypairs_links" in listed
    resp = nova(cloud, "GET", "/os-keypairs?user_id=someone", tok, version="2.10")
    assert resp.status_code == 403
    assert nova(cloud, "DELETE", f"/os-keypairs/{name}", tok).status_code == 202
    assert nova(cloud, "DELETE", "/os-keypairs/a.b@c", tok, version="2.92").status_code == 204
    assert nova(cloud, "GET", f"/os-keypairs/{name}", tok).status_code == 404


def test_flavor_update_access_and_specs_requests(cloud: RunningCloud) -> None:
    admin, member = token(cloud), token(cloud, "aiostack")
    body = {
        "flavor": {"name": unique("f"), "ram": "64", "vcpus": "1", "disk": 0, "id": unique("i")}
    }
    flavor = nova(cloud, "POST", "/flavors", admin, body, version="2.61").json()["flavor"]
    assert flavor["ram"] == 64 and flavor["extra_specs"] == {} and flavor["description"] is None
    fid = flavor["id"]
    described = {"flavor": {"description": "hello"}}
    assert nova(cloud, "PUT", f"/flavors/{fid}", admin, described).status_code == 404
    assert nova(cloud, "PUT", f"/flavors/{fid}", member, described, "2.55").status_code == 403
    resp = nova(cloud, "PUT", f"/flavors/{fid}", admin, described, "2.55")
    assert resp.status_code == 200 and resp.json()["flavor"]["description"] == "hello"
    bad = {"flavor": {"name": "x"}}
    assert nova(cloud, "PUT", f"/flavors/{fid}", admin, bad, "2.55").status_code == 400
    # Access lists: public flavors have none.
    access = f"/flavors/{fid}/os-flavor-access"
    assert nova(cloud, "GET", access, admin).status_code == 404
    add = {"addTenantAccess": {"tenant": "p1"}}
    assert nova(cloud, "POST", f"/flavors/{fid}/action", admin, add, "2.7").status_code == 409
    assert nova(cloud, "POST", f"/flavors/{fid}/action", admin, {"x": 1}).status_code == 400
    assert nova(cloud, "POST", f"/flavors/{fid}/action", member, add).status_code == 403
    # Extra specs one by one.
    specs = f"/flavors/{fid}/os-extra_specs"
    assert nova(cloud, "POST", specs, admin, {"extra_specs": {"a": 1, "b": True}}).json() == {
        "extra_specs": {"a": "1", "b": "True"}
    }
    assert nova(cloud, "GET", specs + "/a", member).json() == {"a": "1"}
    assert nova(cloud, "PUT", specs + "/a", admin, {"a": "2"}).json() == {"a": "2"}
    assert nova(cloud, "PUT", specs + "/a", admin, {"b": "2"}).status_code == 400
    assert nova(cloud, "PUT", specs + "/a", admin, {"a": "2", "b": "3"}).status_code == 400
    assert nova(cloud, "POST", specs, admin, {"extra_specs": {"bad/key": "1"}}).status_code == 400
    assert nova(cloud, "POST", specs, member, {"extra_specs": {"c": "1"}}).status_code == 403
    assert nova(cloud, "DELETE", specs + "/a", admin).status_code == 200
    assert nova(cloud, "DELETE", specs + "/a", admin).status_code == 404
    assert nova(cloud, "GET", specs, admin).json() == {"extra_specs": {"b": "True"}}
    shown = nova(cloud, "GET", f"/flavors/{fid}", member, version="2.61").json()["flavor"]
    assert shown["extra_specs"] == {"b": "True"}
    assert nova(cloud, "DELETE", f"/flavors/{fid}", admin).status_code == 202


def test_keypair_x509_and_admin_user_id(cloud: RunningCloud) -> None:
    admin, member = token(cloud), token(cloud, "aiostack")
    member_id = cloud.sdk("aiostack").current_user_id
    name = unique("x509")
    body = {"keypair": {"name": name, "type": "x509", "user_id": member_id}}
    resp = nova(cloud, "POST", "/os-keypairs", admin, body, version="2.10")
    assert resp.status_code == 201
    kp = resp.json()["keypair"]
    assert kp["type"] == "x509" and kp["user_id"] == member_id
    assert kp["public_key"].startswith("-----BEGIN CERTIFICATE")
    listed = nova(cloud, "GET", "/os-keypairs", member, version="2.2").json()["keypairs"]
    assert name in [k["keypair"]["name"] for k in listed]
    path = f"/os-keypairs/{name}?user_id={member_id}"
    assert nova(cloud, "GET", path, admin, version="2.10").json()["keypair"]["type"] == "x509"
    assert nova(cloud, "GET", f"/os-keypairs/{name}", admin, version="2.10").status_code == 404
    # user_id is not part of the schema before 2.10, type not before 2.2.
    assert nova(cloud, "POST", "/os-keypairs", admin, body, version="2.9").status_code == 400
    typed = {"keypair": {"name": unique("t"), "type": "ssh"}}
    assert nova(cloud, "POST", "/os-keypairs", member, typed, version="2.1").status_code == 400
    assert nova(cloud, "DELETE", path, admin, version="2.10").status_code == 204
