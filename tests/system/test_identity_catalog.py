"""The catalog (regions, services, endpoints), credentials, EC2 credentials and application
credentials through the openstack CLI, with raw HTTP for the status codes of bad requests."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import asyncpg
import pytest
import requests

from cloud.identity.api.credentials import ec2_secret
from cloud.identity.keys import KeyRepository
from tests.conftest import dsn_for
from tests.system.conftest import RunningCloud, unique

V3 = "/identity/v3"


def token_of(cloud: RunningCloud, name: str = "aiostack-admin") -> dict[str, Any]:
    token: dict[str, Any] = cloud.openstack("token", "issue", cloud=name)
    return token


def call(
    cloud: RunningCloud,
    method: str,
    path: str,
    token: str,
    body: Any = None,
    raw: str | None = None,
) -> requests.Response:
    headers = {"X-Auth-Token": token, "Content-Type": "application/json"}
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return requests.request(method, cloud.url + V3 + path, headers=headers, data=data, timeout=10)


def keystone_error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    error = resp.json()["error"]
    assert error["code"] == status
    return str(error["message"])


def says_missing(stderr: str) -> bool:
    """The CLI reported a 404 (its wording varies with the client library)."""
    text = stderr.lower()
    return "could not find" in text or "not found" in text or " found for " in text


@pytest.fixture(scope="module")
def admin(cloud: RunningCloud) -> str:
    return str(token_of(cloud)["id"])


@pytest.fixture(scope="module")
def demo(cloud: RunningCloud) -> dict[str, Any]:
    return token_of(cloud, "aiostack")


# -- catalog ---------------------------------------------------------------------------------------


def test_bootstrap_catalog_is_listed(cloud: RunningCloud) -> None:
    regions = cloud.openstack("region", "list")
    assert {"Region": "RegionOne", "Parent Region": None, "Description": ""} in regions
    endpoints = cloud.openstack("endpoint", "list", "--service", "identity")
    assert sorted(e["Interface"] for e in endpoints) == ["admin", "internal", "public"]
    assert {e["URL"] for e in endpoints} == {f"{cloud.url}/identity/v3"}
    assert all(e["Region"] == "RegionOne" and e["Enabled"] for e in endpoints)
    services = cloud.openstack("service", "list")
    assert any(s["Type"] == "identity" and s["Name"] == "keystone" for s in services)


def test_region_lifecycle_with_children(cloud: RunningCloud, admin: str) -> None:
    parent, child = unique("RegionTwo"), unique("RegionTwoA")
    created = cloud.openstack("region", "create", parent, "--description", "second site")
    assert created["region"] == parent and created["description"] == "second site"
    cloud.openstack("region", "create", child, "--parent-region", parent)
    shown = cloud.openstack("region", "show", child)
    assert shown["parent_region"] == parent

    duplicate = call(cloud, "POST", "/regions", admin, {"region": {"id": parent}})
    assert "Duplicate" in keystone_error(duplicate, 409)
    assert "409" in cloud.fails("region", "create", parent)
    orphan = call(cloud, "POST", "/regions", admin, {"region": {"parent_region_id": "nowhere"}})
    keystone_error(orphan, 404)
    circular = call(
        cloud, "PATCH", f"/regions/{parent}", admin, {"region": {"parent_region_id": child}}
    )
    assert "circular" in keystone_error(circular, 400)
    listed = call(cloud, "GET", f"/regions?parent_region_id={parent}", admin).json()["regions"]
    assert [r["id"] for r in listed] == [child]

    cloud.openstack("region", "set", parent, "--description", "renamed")
    assert cloud.openstack("region", "show", parent)["description"] == "renamed"
    cloud.openstack("region", "delete", parent)  # takes its child region along, as Keystone does
    assert says_missing(cloud.fails("region", "show", parent))
    keystone_error(call(cloud, "GET", f"/regions/{child}", admin), 404)


def test_region_keeps_extra_attributes_and_generated_id(cloud: RunningCloud, admin: str) -> None:
    resp = call(cloud, "POST", "/regions", admin, {"region": {"description": "x", "tier": 3}})
    assert resp.status_code == 201, resp.text
    region = resp.json()["region"]
    assert len(region["id"]) == 32 and region["tier"] == 3
    assert region["links"]["self"] == f"{cloud.url}{V3}/regions/{region['id']}"
    put = call(cloud, "PUT", "/regions/PutRegion", admin, {"region": {"description": "p"}})
    assert put.status_code == 201 and put.json()["region"]["id"] == "PutRegion"
    assert call(cloud, "GET", f"/regions/{region['id']}", admin).json()["region"]["tier"] == 3
    for rid in (region["id"], "PutRegion"):
        assert call(cloud, "DELETE", f"/regions/{rid}", admin).status_code == 204


def test_service_and_endpoint_lifecycle(cloud: RunningCloud, admin: str) -> None:
    name, region = unique("compute"), unique("RegionEdge")
    cloud.openstack("region", "create", region)
    service = cloud.openstack(
        "service", "create", "--name", name, "--description", "VMs", "compute"
    )
    assert service["type"] == "compute" and service["name"] == name and service["enabled"]
    assert any(s["ID"] == service["id"] for s in cloud.openstack("service", "list"))
    assert cloud.openstack("service", "show", service["id"])["description"] == "VMs"

    url = "http://compute.example:8774/v2.1"
    endpoint = cloud.openstack(
        "endpoint", "create", "--region", region, service["id"], "public", url
    )
    assert endpoint["url"] == url and endpoint["region"] == region
    assert endpoint["interface"] == "public" and endpoint["service_id"] == service["id"]
    listed = cloud.openstack("endpoint", "list", "--service", service["id"])
    assert [e["ID"] for e in listed] == [endpoint["id"]]
    by_filter = call(cloud, "GET", f"/endpoints?region_id={region}&interface=public", admin)
    assert [e["id"] for e in by_filter.json()["endpoints"]] == [endpoint["id"]]

    catalog = cloud.openstack("catalog", "list")
    entry = next(c for c in catalog if c["Name"] == name)
    assert entry["Endpoints"][0]["url"] == url

    # A region with endpoints is not deleted (403, as Keystone).
    assert (
        "unable to delete region"
        in keystone_error(call(cloud, "DELETE", f"/regions/{region}", admin), 403).lower()
    )

    cloud.openstack("endpoint", "set", "--disable", endpoint["id"])
    assert cloud.openstack("endpoint", "show", endpoint["id"])["enabled"] is False
    assert not any(c["Name"] == name for c in cloud.openstack("catalog", "list"))
    cloud.openstack("endpoint", "delete", endpoint["id"])
    assert says_missing(cloud.fails("endpoint", "show", endpoint["id"]))

    cloud.openstack("service", "set", "--name", name + "-x", service["id"])
    assert cloud.openstack("service", "show", service["id"])["name"] == name + "-x"
    cloud.openstack("service", "delete", service["id"])
    keystone_error(call(cloud, "GET", f"/services/{service['id']}", admin), 404)
    cloud.openstack("region", "delete", region)


def test_deleting_a_service_deletes_its_endpoints(cloud: RunningCloud, admin: str) -> None:
    svc = call(cloud, "POST", "/services", admin, {"service": {"type": "image"}}).json()["service"]
    assert svc["name"] == "" and svc["enabled"] is True
    ep = call(
        cloud,
        "POST",
        "/endpoints",
        admin,
        {
            "endpoint": {
                "service_id": svc["id"],
                "interface": "internal",
                "url": "http://i:9292",
                "region": unique("LegacyRegion"),
                "name": "glance-internal",
            }
        },
    )
    assert ep.status_code == 201, ep.text
    endpoint = ep.json()["endpoint"]
    assert endpoint["name"] == "glance-internal"
    # The legacy ``region`` attribute created the region.
    assert call(cloud, "GET", f"/regions/{endpoint['region_id']}", admin).status_code == 200
    assert call(cloud, "DELETE", f"/services/{svc['id']}", admin).status_code == 204
    keystone_error(call(cloud, "GET", f"/endpoints/{endpoint['id']}", admin), 404)
    assert call(cloud, "DELETE", f"/regions/{endpoint['region_id']}", admin).status_code == 204


def test_bad_catalog_requests_are_client_errors(cloud: RunningCloud, admin: str) -> None:
    svc = call(cloud, "GET", "/services?type=identity", admin).json()["services"][0]
    good = {"service_id": svc["id"], "interface": "public", "url": "http://x:1"}
    cases: list[tuple[str, str, Any, int, str]] = [
        # Unknown references in a body are a 400 in Keystone (ValidationError), not a 404.
        ("POST", "/endpoints", {"endpoint": good | {"service_id": "nope"}}, 400, "service_id"),
        ("POST", "/endpoints", {"endpoint": good | {"region_id": "nope"}}, 400, "region_id"),
        ("POST", "/endpoints", {"endpoint": good | {"interface": "pub"}}, 400, "interface"),
        ("POST", "/endpoints", {"endpoint": good | {"url": "no-scheme"}}, 400, "url"),
        ("POST", "/endpoints", {"endpoint": good | {"enabled": "yes"}}, 400, "enabled"),
        ("POST", "/endpoints", {"endpoint": {"interface": "public"}}, 400, "service_id"),
        ("GET", "/endpoints?interface=sideways", None, 400, "interface"),
        ("POST", "/services", {"service": {"type": 7}}, 400, "type"),
        ("POST", "/services", {"service": {"name": "no type"}}, 400, "type"),
        ("POST", "/services", {"service": {"type": "x", "enabled": None}}, 400, "enabled"),
        ("POST", "/regions", {"region": {"description": ["x"]}}, 400, "description"),
        ("POST", "/regions", '{"region": {', 400, "JSON"),
        ("POST", "/regions", '{"region": {"weight": NaN}}', 400, ""),
        ("POST", "/services", '{"service": {"type": "x", "size": 1e400}}', 400, ""),
        ("POST", "/services", "[]", 400, ""),
        ("PATCH", "/services/" + svc["id"], {"service": {}}, 400, "service"),
        ("PATCH", "/regions/RegionOne", {"region": {"id": "x"}}, 400, "id"),
        ("GET", "/endpoints/missing", None, 404, "endpoint"),
        ("PATCH", "/endpoints/missing", {"endpoint": {"url": "http://y"}}, 404, "endpoint"),
        ("DELETE", "/services/missing", None, 404, "service"),
        ("DELETE", "/regions/missing", None, 404, "region"),
    ]
    for method, path, body, status, words in cases:
        raw = body if isinstance(body, str) else None
        resp = call(cloud, method, path, admin, None if raw else body, raw=raw)
        assert words in keystone_error(resp, status), (method, path, body)
    missing = cloud.fails("endpoint", "create", "no-such-service", "public", "http://z")
    assert "No service with a type, name or ID of 'no-such-service'" in missing
    assert "invalid choice" in cloud.fails("endpoint", "create", svc["id"], "sideways", "http://z")


def test_members_may_read_regions_but_not_change_the_catalog(
    cloud: RunningCloud, demo: dict[str, Any]
) -> None:
    token = demo["id"]
    assert call(cloud, "GET", "/regions", token).status_code == 200
    keystone_error(call(cloud, "GET", "/endpoints", token), 403)
    keystone_error(call(cloud, "POST", "/regions", token, {"region": {"id": unique("R")}}), 403)
    keystone_error(call(cloud, "POST", "/services", token, {"service": {"type": "x"}}), 403)


# -- application credentials -----------------------------------------------------------------------


def app_cred_cli(cloud: RunningCloud, app_cred_id: str, secret: str, *args: str) -> Any:
    """``openstack ARGS`` authenticated with an application credential (no clouds.yaml entry)."""
    return cloud.run_cli(
        "--os-auth-type", "v3applicationcredential",
        "--os-auth-url", f"{cloud.url}/identity",
        "--os-application-credential-id", app_cred_id,
        "--os-application-credential-secret", secret,
        "--os-identity-api-version", "3",
        *args,
        cloud="",
    )  # fmt: skip


def app_cred_token(cloud: RunningCloud, app_cred_id: str, secret: str) -> dict[str, Any]:
    proc = app_cred_cli(cloud, app_cred_id, secret, "token", "issue", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    token: dict[str, Any] = json.loads(proc.stdout)
    return token


def roles_of(cloud: RunningCloud, token: str) -> list[str]:
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    body = requests.get(cloud.url + V3 + "/auth/tokens", headers=headers, timeout=5).json()
    return sorted(r["name"] for r in body["token"]["roles"])


def test_application_credential_authenticates_and_dies_with_its_deletion(
    cloud: RunningCloud, demo: dict[str, Any]
) -> None:
    name = unique("ci")
    created = cloud.openstack(
        "application", "credential", "create", name, "--description", "ci runner", cloud="aiostack"
    )
    assert created["Name"] == name and created["Project ID"] == demo["project_id"]
    assert created["Description"] == "ci runner" and created["Unrestricted"] is False
    assert sorted(r["name"] for r in created["Roles"]) == ["member", "reader"]
    app_cred_id, secret = created["ID"], created["Secret"]
    assert len(secret) >= 43

    assert not stored(
        cloud, "SELECT seq FROM events WHERE body::text LIKE '%' || $1 || '%'", secret
    )
    token = app_cred_token(cloud, app_cred_id, secret)
    assert token["project_id"] == demo["project_id"] and token["user_id"] == demo["user_id"]
    assert roles_of(cloud, token["id"]) == ["member", "reader"]
    catalog = requests.get(
        cloud.url + V3 + "/auth/catalog", headers={"X-Auth-Token": token["id"]}, timeout=5
    )
    assert catalog.status_code == 200

    listed = cloud.openstack("application", "credential", "list", cloud="aiostack")
    assert [c["Name"] for c in listed if c["ID"] == app_cred_id] == [name]
    shown = cloud.openstack("application", "credential", "show", name, cloud="aiostack")
    assert shown["ID"] == app_cred_id and "Secret" not in shown

    # A restricted application credential may not mint another one.
    path = f"/users/{demo['user_id']}/application_credentials"
    nested = call(cloud, "POST", path, token["id"], {"application_credential": {"name": "x"}})
    assert "application_credential" in keystone_error(nested, 403)

    cloud.openstack("application", "credential", "delete", name, cloud="aiostack")
    again = requests.get(
        cloud.url + V3 + "/auth/catalog", headers={"X-Auth-Token": token["id"]}, timeout=5
    )
    assert again.status_code == 401
    refused = app_cred_cli(cloud, app_cred_id, secret, "token", "issue")
    assert refused.returncode != 0 and "401" in refused.stderr


def test_application_credential_roles_secret_and_expiry(
    cloud: RunningCloud, demo: dict[str, Any]
) -> None:
    name = unique("reader-only")
    created = cloud.openstack(
        "application", "credential", "create", name, "--role", "reader",
        "--secret", "s3cret-of-mine", "--expiration", "2099-01-01T00:00:00",
        "--unrestricted", cloud="aiostack",
    )  # fmt: skip
    assert [r["name"] for r in created["Roles"]] == ["reader"]
    assert created["Secret"] == "s3cret-of-mine" and created["Unrestricted"] is True
    assert created["Expires At"] == "2099-01-01T00:00:00.000000"
    token = app_cred_token(cloud, created["ID"], "s3cret-of-mine")
    assert roles_of(cloud, token["id"]) == ["reader"]
    # Unrestricted: it may create (and delete) application credentials.
    path = f"/users/{demo['user_id']}/application_credentials"
    nested = call(
        cloud, "POST", path, token["id"], {"application_credential": {"name": name + "2"}}
    )
    assert nested.status_code == 201, nested.text
    assert [r["name"] for r in nested.json()["application_credential"]["roles"]] == ["reader"]
    assert call(cloud, "DELETE", f"{path}/{nested.json()['application_credential']['id']}",
                token["id"]).status_code == 204  # fmt: skip

    user = demo["id"]  # the demo user's own (password) token
    bad = [
        ({"name": name}, 409),
        ({"name": unique("x"), "roles": [{"name": "admin"}]}, 400),
        ({"name": unique("x"), "roles": [{"name": "no-such-role"}]}, 404),
        ({"name": unique("x"), "roles": [{"id": "a", "name": "b"}]}, 400),
        ({"name": unique("x"), "expires_at": "2001-01-01T00:00:00Z"}, 400),
        ({"name": unique("x"), "expires_at": "tomorrow"}, 400),
        ({"name": unique("x"), "unrestricted": "yes"}, 400),
        ({"name": unique("x"), "colour": "blue"}, 400),
        ({"name": ""}, 400),
    ]
    for body, status in bad:
        keystone_error(call(cloud, "POST", path, user, {"application_credential": body}), status)
    other = call(cloud, "POST", "/users/someone-else/application_credentials", user,
                 {"application_credential": {"name": "x"}})  # fmt: skip
    keystone_error(other, 403)
    keystone_error(call(cloud, "GET", f"{path}/missing", user), 404)
    cloud.openstack("application", "credential", "delete", name, cloud="aiostack")


# -- EC2 and generic credentials -------------------------------------------------------------------


def stored(cloud: RunningCloud, query: str, *args: Any) -> list[Any]:
    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn_for(cloud.database))
        try:
            return [tuple(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def assert_kept_secret(cloud: RunningCloud, secret: str) -> None:
    """Neither a credential row nor any event holds ``secret`` in clear."""
    assert not stored(
        cloud, "SELECT id FROM id_credentials WHERE blob LIKE '%' || $1 || '%'", secret
    )
    assert not stored(
        cloud, "SELECT seq FROM events WHERE body::text LIKE '%' || $1 || '%'", secret
    )


def ec2_lookup(cloud: RunningCloud, access: str) -> tuple[str, str, str] | None:
    async def lookup() -> tuple[str, str, str] | None:
        conn = await asyncpg.connect(dsn_for(cloud.database))
        try:
            keys = KeyRepository(cloud.state_dir.resolve() / "credential-keys")
            return await ec2_secret(conn, keys, access)
        finally:
            await conn.close()

    return asyncio.run(lookup())


def test_ec2_credentials_of_the_demo_user(cloud: RunningCloud, demo: dict[str, Any]) -> None:
    created = cloud.openstack("ec2", "credentials", "create", cloud="aiostack")
    access, secret = created["access"], created["secret"]
    assert created["project_id"] == demo["project_id"] and created["user_id"] == demo["user_id"]
    assert ec2_lookup(cloud, access) == (demo["user_id"], demo["project_id"], secret)
    assert_kept_secret(cloud, secret)

    listed = cloud.openstack("ec2", "credentials", "list", cloud="aiostack")
    assert {"Access": access, "Secret": secret, "Project ID": demo["project_id"],
            "User ID": demo["user_id"]} in listed  # fmt: skip
    shown = cloud.openstack("ec2", "credentials", "show", access, cloud="aiostack")
    assert shown["secret"] == secret
    # Stored as an ec2 credential whose id is the SHA-256 of the access key, blob encrypted.
    creds = cloud.openstack("credential", "list", "--type", "ec2", cloud="aiostack")
    mine = [c for c in creds if json.loads(c["Data"])["access"] == access]
    assert len(mine) == 1 and len(mine[0]["ID"]) == 64

    cloud.openstack("ec2", "credentials", "delete", access, cloud="aiostack")
    assert not any(
        c["Access"] == access
        for c in cloud.openstack("ec2", "credentials", "list", cloud="aiostack")
    )
    assert ec2_lookup(cloud, access) is None
    assert says_missing(cloud.fails("ec2", "credentials", "show", access, cloud="aiostack"))


def test_admin_manages_ec2_credentials_of_another_user(
    cloud: RunningCloud, admin: str, demo: dict[str, Any]
) -> None:
    user = demo["user_id"]
    created = cloud.openstack(
        "ec2", "credentials", "create", "--user", user, "--project", demo["project_id"]
    )
    assert created["user_id"] == user
    listed = cloud.openstack("ec2", "credentials", "list", "--user", user)
    assert created["access"] in {c["Access"] for c in listed}
    # The demo user may not read the admin's keys.
    admin_user = token_of(cloud)["user_id"]
    path = f"/users/{admin_user}/credentials/OS-EC2"
    keystone_error(call(cloud, "GET", path, demo["id"]), 403)
    keystone_error(call(cloud, "POST", path, demo["id"], {"tenant_id": demo["project_id"]}), 403)
    mine = f"/users/{user}/credentials/OS-EC2"
    keystone_error(call(cloud, "POST", mine, admin, {"tenant_id": "no-such-project"}), 404)
    keystone_error(call(cloud, "POST", mine, admin, {"tenant_id": 5}), 400)
    keystone_error(call(cloud, "GET", f"{mine}/not-an-access-key", admin), 404)
    cloud.openstack("ec2", "credentials", "delete", "--user", user, created["access"])
    assert created["access"] not in {
        c["Access"] for c in cloud.openstack("ec2", "credentials", "list", "--user", user)
    }


def test_credential_lifecycle(cloud: RunningCloud, admin: str, demo: dict[str, Any]) -> None:
    user = demo["user_id"]
    cert = cloud.openstack("credential", "create", "--type", "cert", user, "-----BEGIN CERT-----")
    assert cert["type"] == "cert" and cert["blob"] == "-----BEGIN CERT-----"
    shown = cloud.openstack("credential", "show", cert["id"])
    assert shown["blob"] == "-----BEGIN CERT-----" and shown["user_id"] == user
    cloud.openstack("credential", "set", "--type", "cert", "--data", "renewed", "--user", user,
                    cert["id"])  # fmt: skip
    assert cloud.openstack("credential", "show", cert["id"])["blob"] == "renewed"
    # The owner sees it too; the blob is stored encrypted, and no event carries it.
    assert cert["id"] in {c["ID"] for c in cloud.openstack("credential", "list", cloud="aiostack")}
    assert_kept_secret(cloud, "renewed")
    (blob_at_rest,) = stored(cloud, "SELECT blob FROM id_credentials WHERE id = $1", cert["id"])[0]
    assert blob_at_rest.startswith("gAAAAA")

    blob = json.dumps({"access": unique("AKIA"), "secret": "shh"})
    ec2 = call(cloud, "POST", "/credentials", admin,
               {"credential": {"type": "ec2", "user_id": user, "blob": blob,
                               "project_id": demo["project_id"]}})  # fmt: skip
    assert ec2.status_code == 201, ec2.text
    assert ec2_lookup(cloud, json.loads(blob)["access"]) == (user, demo["project_id"], "shh")
    assert (
        ec2.json()["credential"]["id"]
        == hashlib.sha256(json.loads(blob)["access"].encode()).hexdigest()
    )
    dup = call(cloud, "POST", "/credentials", admin, {"credential": ec2.json()["credential"]})
    keystone_error(dup, 409)

    bad = [
        {"type": "ec2", "user_id": user, "blob": blob},  # no project
        {"type": "ec2", "user_id": user, "blob": "not json", "project_id": demo["project_id"]},
        {"type": "ec2", "user_id": user, "blob": "{}", "project_id": demo["project_id"]},
        {"type": "cert", "user_id": user, "blob": {"a": 1}},
        {"type": "cert", "user_id": "no-such-user", "blob": "x"},
        {"type": "cert", "blob": "x"},
        {"type": "ec2", "user_id": user, "blob": '{"access": "\\ud800"}', "project_id": "p"},
    ]
    for body in bad:
        keystone_error(call(cloud, "POST", "/credentials", admin, {"credential": body}), 400)
    admin_user = token_of(cloud)["user_id"]
    theirs = {"credential": {"type": "cert", "user_id": admin_user, "blob": "x"}}
    keystone_error(call(cloud, "POST", "/credentials", demo["id"], theirs), 403)
    keystone_error(call(cloud, "GET", "/credentials/missing", admin), 404)

    for cred_id in (cert["id"], ec2.json()["credential"]["id"]):
        cloud.openstack("credential", "delete", cred_id)
    assert says_missing(cloud.fails("credential", "show", cert["id"]))
