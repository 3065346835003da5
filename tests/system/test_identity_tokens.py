"""Tokens and the catalog through the openstack CLI and openstacksdk."""

from __future__ import annotations

import requests

from tests.system.conftest import RunningCloud


def test_version_discovery_as_keystone_publishes_it(cloud: RunningCloud) -> None:
    root = requests.get(cloud.url + "/", allow_redirects=False, timeout=5)
    assert root.status_code == 300
    assert root.headers["Location"] == cloud.url + "/identity/v3/"
    assert root.headers["X-Openstack-Request-Id"].startswith("req-")
    (v3,) = root.json()["versions"]["values"]
    assert v3["id"] == "v3.14" and v3["status"] == "stable"
    assert v3["links"] == [{"rel": "self", "href": cloud.url + "/identity/v3/"}]
    assert (
        requests.get(cloud.url + "/identity", timeout=5, allow_redirects=False).status_code == 300
    )
    version = requests.get(cloud.url + "/identity/v3", timeout=5).json()["version"]
    assert version["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"


def test_token_issue_and_revoke(cloud: RunningCloud) -> None:
    token = cloud.openstack("token", "issue")
    assert token["project_id"] and token["user_id"] and token["expires"]
    subject = token["id"]
    headers = {"X-Auth-Token": subject, "X-Subject-Token": subject}
    assert requests.get(cloud.url + "/identity/v3/auth/tokens", headers=headers, timeout=5).ok

    cloud.openstack("token", "revoke", subject)

    check = requests.get(
        cloud.url + "/identity/v3/auth/catalog", headers={"X-Auth-Token": subject}, timeout=5
    )
    assert check.status_code == 401
    assert check.json()["error"]["code"] == 401
    assert check.headers["WWW-Authenticate"] == f'Keystone uri="{cloud.url}/identity"'


def test_catalog_lists_identity(cloud: RunningCloud) -> None:
    catalog = cloud.openstack("catalog", "list")
    identity = next(entry for entry in catalog if entry["Type"] == "identity")
    assert identity["Name"] == "keystone"
    public = [e for e in identity["Endpoints"] if e["interface"] == "public"]
    assert public == [
        {
            "id": public[0]["id"],
            "interface": "public",
            "region_id": "RegionOne",
            "url": f"{cloud.url}/identity/v3",
            "region": "RegionOne",
        }
    ]


def test_demo_user_gets_a_project_token_with_member_and_reader(cloud: RunningCloud) -> None:
    conn = cloud.sdk("aiostack")
    access = conn.session.auth.get_access(conn.session)
    assert sorted(access.role_names) == ["member", "reader"]
    assert access.project_name == "demo"
