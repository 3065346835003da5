"""Domains, projects, users and groups through the openstack CLI, and the API's guard rails
(isolation between callers, immediate revocation, bad input) through plain HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.system.conftest import (
    CliError,
    RunningCloud,
    create_database,
    drop_database,
    start_cloud,
    stop_cloud,
    unique,
)

TIMEOUT = 10


# -- helpers ---------------------------------------------------------------------------------------


def v3(cloud: RunningCloud, path: str) -> str:
    return f"{cloud.url}/identity/v3{path}"


def login(
    cloud: RunningCloud, user: str, password: str, project: str | None = None
) -> requests.Response:
    """``POST /auth/tokens`` by user name in the default domain (project-scoped if ``project``)."""
    auth: dict[str, Any] = {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}},
        }
    }
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return requests.post(v3(cloud, "/auth/tokens"), json={"auth": auth}, timeout=TIMEOUT)


def token_for(cloud: RunningCloud, user: str, password: str, project: str | None = None) -> str:
    reply = login(cloud, user, password, project)
    assert reply.status_code == 201, reply.text
    return reply.headers["X-Subject-Token"]


def call(cloud: RunningCloud, method: str, path: str, token: str, **kw: Any) -> requests.Response:
    headers = {"X-Auth-Token": token, **kw.pop("headers", {})}
    return requests.request(method, v3(cloud, path), headers=headers, timeout=TIMEOUT, **kw)


def assert_fault(reply: requests.Response, status: int) -> dict[str, Any]:
    """The reply is Keystone's error body with this status."""
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == status and error["message"]
    return error


def assert_gone(stderr: str) -> None:
    """The CLI's words for a resource it cannot find."""
    assert re.search(r"No \w+ (found|with a name or ID)", stderr, re.IGNORECASE), stderr


@pytest.fixture(scope="module")
def admin_token(cloud: RunningCloud) -> str:
    return str(cloud.sdk("aiostack-admin").session.get_token())


@pytest.fixture(scope="module")
def demo_token(cloud: RunningCloud) -> str:
    return str(cloud.sdk("aiostack").session.get_token())


def new_user(
    cloud: RunningCloud, password: str, *, project: str | None = None, role: str = "member"
) -> dict[str, Any]:
    """A user with ``password`` (and ``role`` on ``project`` when given)."""
    user: dict[str, Any] = cloud.openstack("user", "create", unique("user"), "--password", password)
    if project is not None:
        cloud.openstack("role", "add", "--project", project, "--user", user["id"], role)
    return user


# -- projects --------------------------------------------------------------------------------------


def test_project_lifecycle_with_hierarchy_tags_and_properties(cloud: RunningCloud) -> None:
    name = unique("proj")
    created = cloud.openstack(
        *f"project create {name} --description first --tag blue --tag green".split(),
        *("--property", "cost_center=42"),
    )
    assert created["name"] == name and created["enabled"] is True
    assert created["domain_id"] == "default" and created["parent_id"] == "default"
    assert created["is_domain"] is False and sorted(created["tags"]) == ["blue", "green"]
    assert created["cost_center"] == "42" and created["description"] == "first"

    child = cloud.openstack("project", "create", unique("child"), "--parent", name)
    assert child["parent_id"] == created["id"] and child["domain_id"] == "default"
    children = cloud.openstack("project", "list", "--parent", created["id"])
    assert [p["ID"] for p in children] == [child["id"]]
    assert name in {p["Name"] for p in cloud.openstack("project", "list")}
    family = cloud.openstack("project", "show", "--parents", "--children", name)
    assert family["parents"] == {"default": None}
    assert family["subtree"] == {child["id"]: None}
    lineage = cloud.openstack("project", "show", "--parents", child["id"])
    assert lineage["parents"] == {created["id"]: {"default": None}}

    # Keystone's hierarchy rules: no deleting a parent, nor disabling one with enabled children.
    assert "not a leaf" in cloud.fails("project", "delete", name)
    assert "subtree contains enabled projects" in cloud.fails("project", "set", "--disable", name)
    cloud.openstack("project", "set", "--disable", child["id"])
    cloud.openstack("project", "set", "--disable", name)
    assert "disabled parents" in cloud.fails("project", "set", "--enable", child["id"])

    renamed = unique("renamed")
    cloud.openstack(
        *f"project set {name} --name {renamed} --tag red --property owner=ops".split(),
        *("--description", "second"),
    )
    shown = cloud.openstack("project", "show", renamed)
    assert shown["id"] == created["id"] and shown["enabled"] is False
    assert sorted(shown["tags"]) == ["blue", "green", "red"]
    assert shown["owner"] == "ops" and shown["cost_center"] == "42"
    assert shown["description"] == "second"

    cloud.openstack("project", "delete", child["id"])
    cloud.openstack("project", "delete", renamed)
    assert_gone(cloud.fails("project", "show", created["id"]))


def test_project_tags_api_and_tag_filters(cloud: RunningCloud, admin_token: str) -> None:
    project = cloud.openstack("project", "create", unique("tagged"))
    path = f"/projects/{project['id']}/tags"
    put = call(cloud, "PUT", path, admin_token, json={"tags": ["alpha", "beta"]})
    assert put.status_code == 200 and put.json()["tags"] == ["alpha", "beta"]
    assert call(cloud, "PUT", path + "/gamma", admin_token).status_code == 201
    assert call(cloud, "GET", path + "/gamma", admin_token).status_code == 204
    assert call(cloud, "GET", path, admin_token).json()["tags"] == ["alpha", "beta", "gamma"]
    assert call(cloud, "DELETE", path + "/beta", admin_token).status_code == 204
    assert_fault(call(cloud, "GET", path + "/beta", admin_token), 404)
    assert_fault(call(cloud, "DELETE", path + "/beta", admin_token), 404)

    def ids(query: str) -> set[str]:
        reply = call(cloud, "GET", "/projects?" + query, admin_token)
        assert reply.status_code == 200, reply.text
        return {p["id"] for p in reply.json()["projects"]}

    assert project["id"] in ids("tags=alpha,gamma")
    assert project["id"] not in ids("tags=alpha,beta")
    assert project["id"] in ids("tags-any=beta,gamma")
    assert project["id"] not in ids("not-tags=alpha,gamma")
    assert project["id"] in ids("not-tags-any=beta")
    assert project["id"] not in ids("not-tags-any=alpha")

    assert_fault(call(cloud, "PUT", path, admin_token, json={"tags": ["a/b"]}), 400)
    assert_fault(call(cloud, "PUT", path, admin_token, json={"tags": ["x", "x"]}), 400)
    assert_fault(
        call(cloud, "PUT", path, admin_token, json={"tags": [f"t{i}" for i in range(81)]}), 400
    )
    assert call(cloud, "DELETE", path, admin_token).status_code == 204
    assert call(cloud, "GET", path, admin_token).json()["tags"] == []


def test_disabling_a_project_revokes_its_tokens_at_once(cloud: RunningCloud) -> None:
    project = cloud.openstack("project", "create", unique("revoked"))
    user = new_user(cloud, "pw-revoke-1", project=project["id"])
    token = token_for(cloud, user["name"], "pw-revoke-1", project["name"])
    assert call(cloud, "GET", f"/projects/{project['id']}", token).status_code == 200

    cloud.openstack("project", "set", "--disable", project["id"])

    assert_fault(call(cloud, "GET", f"/projects/{project['id']}", token), 401)
    assert login(cloud, user["name"], "pw-revoke-1", project["name"]).status_code == 401


# -- users -----------------------------------------------------------------------------------------


def test_user_lifecycle_never_shows_the_password(cloud: RunningCloud) -> None:
    project = cloud.openstack("project", "create", unique("home"))
    name = unique("alice")
    user = cloud.openstack(
        *f"user create {name} --password s3cret-one --email alice@example.org".split(),
        *("--description", "Alice", "--project", project["id"]),
    )
    assert user["name"] == name and user["email"] == "alice@example.org"
    assert user["default_project_id"] == project["id"] and user["enabled"] is True
    assert user["domain_id"] == "default" and user["password_expires_at"] is None
    cloud.openstack("role", "add", "--project", project["id"], "--user", user["id"], "member")
    assert name in {u["Name"] for u in cloud.openstack("user", "list")}

    raw = requests.get(
        v3(cloud, f"/users/{user['id']}"),
        headers={"X-Auth-Token": str(cloud.sdk().session.get_token())},
        timeout=TIMEOUT,
    ).json()["user"]
    assert "password" not in raw and not any("hash" in key for key in raw)
    assert raw["email"] == "alice@example.org" and raw["description"] == "Alice"
    assert raw["links"]["self"].endswith(f"/identity/v3/users/{user['id']}")

    # Disabling the user kills their live token at once.
    token = token_for(cloud, name, "s3cret-one", project["name"])
    assert call(cloud, "GET", f"/users/{user['id']}", token).status_code == 200
    cloud.openstack("user", "set", "--disable", name)
    assert_fault(call(cloud, "GET", f"/users/{user['id']}", token), 401)
    assert login(cloud, name, "s3cret-one").status_code == 401
    cloud.openstack("user", "set", "--enable", name)

    # An administrator's password reset kills the tokens issued before it.
    token = token_for(cloud, name, "s3cret-one", project["name"])
    cloud.openstack("user", "set", "--password", "s3cret-two", name)
    assert_fault(call(cloud, "GET", f"/users/{user['id']}", token), 401)
    assert login(cloud, name, "s3cret-one").status_code == 401
    assert login(cloud, name, "s3cret-two", project["name"]).status_code == 201

    shown = cloud.openstack("user", "show", name)
    assert shown["id"] == user["id"] and shown["enabled"] is True
    cloud.openstack("user", "delete", name)
    assert_gone(cloud.fails("user", "show", user["id"]))
    assert login(cloud, name, "s3cret-two").status_code == 401
    # Its role assignments went with it.
    assignments = cloud.openstack("role", "assignment", "list", "--project", project["id"])
    assert all(a["User"] != user["id"] for a in assignments)


def test_user_changes_own_password_with_the_cli(cloud: RunningCloud) -> None:
    project = cloud.openstack("project", "create", unique("self"))
    user = new_user(cloud, "original-pw", project=project["id"])
    old_token = token_for(cloud, user["name"], "original-pw", project["name"])
    as_user = {
        "OS_AUTH_URL": cloud.url + "/identity",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": user["name"],
        "OS_USER_DOMAIN_ID": "default",
        "OS_PROJECT_NAME": project["name"],
        "OS_PROJECT_DOMAIN_ID": "default",
        "OS_PASSWORD": "original-pw",
    }
    change = ("user", "password", "set", "--password", "new-pw-1", "--original-password")

    wrong = cloud.run_cli(*change, "nope", cloud="", extra_env=as_user)
    assert wrong.returncode != 0 and "401" in wrong.stderr
    assert call(cloud, "GET", f"/users/{user['id']}", old_token).status_code == 200

    done = cloud.run_cli(*change, "original-pw", cloud="", extra_env=as_user)
    assert done.returncode == 0, done.stderr

    assert_fault(call(cloud, "GET", f"/users/{user['id']}", old_token), 401)
    assert login(cloud, user["name"], "original-pw").status_code == 401
    new_token = token_for(cloud, user["name"], "new-pw-1", project["name"])
    # Only for oneself: another user's password cannot be changed this way.
    other = new_user(cloud, "other-pw")
    body = {"user": {"password": "x-new", "original_password": "other-pw"}}
    assert_fault(call(cloud, "POST", f"/users/{other['id']}/password", new_token, json=body), 403)
    # Nor by a user whose password is locked (lock_password), even with an unscoped token.
    cloud.openstack("user", "set", "--enable-lock-password", other["id"])
    unscoped = token_for(cloud, other["name"], "other-pw")
    reply = call(cloud, "POST", f"/users/{other['id']}/password", unscoped, json=body)
    assert "password changes" in assert_fault(reply, 403)["message"]
    assert login(cloud, other["name"], "other-pw").status_code == 201


# -- groups ----------------------------------------------------------------------------------------


def test_group_membership_through_the_cli(cloud: RunningCloud) -> None:
    project = cloud.openstack("project", "create", unique("gproj"))
    group = cloud.openstack("group", "create", unique("group"), "--description", "ops team")
    assert group["description"] == "ops team" and group["domain_id"] == "default"
    cloud.openstack("role", "add", "--project", project["id"], "--group", group["id"], "member")
    user = new_user(cloud, "group-pw")

    cloud.openstack("group", "add", "user", group["id"], user["id"])
    assert cloud.openstack("group", "contains", "user", group["id"], user["id"]).endswith(
        f"{user['id']} in group {group['id']}"
    )
    members = cloud.openstack("user", "list", "--group", group["id"])
    assert [u["ID"] for u in members] == [user["id"]]
    assert group["id"] in {g["ID"] for g in cloud.openstack("group", "list", "--user", user["id"])}

    # The group's role on the project makes the project the user's.
    token = token_for(cloud, user["name"], "group-pw", project["name"])
    mine = call(cloud, "GET", f"/users/{user['id']}/projects", token)
    assert mine.status_code == 200 and [p["id"] for p in mine.json()["projects"]] == [project["id"]]

    # Leaving the group ends the token (its roles came from the group).
    cloud.openstack("group", "remove", "user", group["id"], user["id"])
    assert_fault(call(cloud, "GET", f"/users/{user['id']}/projects", token), 401)
    contains = cloud.run_cli("group", "contains", "user", group["id"], user["id"])
    assert contains.returncode == 0 and "not in group" in contains.stderr
    assert login(cloud, user["name"], "group-pw", project["name"]).status_code == 401

    # Deleting a group revokes its members' tokens.
    cloud.openstack("group", "add", "user", group["id"], user["id"])
    token = token_for(cloud, user["name"], "group-pw", project["name"])
    cloud.openstack("group", "delete", group["id"])
    assert_fault(call(cloud, "GET", f"/users/{user['id']}/projects", token), 401)
    assert_gone(cloud.fails("group", "show", group["id"]))


# -- domains ---------------------------------------------------------------------------------------


def test_domain_must_be_disabled_before_delete(cloud: RunningCloud, admin_token: str) -> None:
    domain = cloud.openstack("domain", "create", unique("dom"), "--description", "tenant")
    assert domain["enabled"] is True and domain["description"] == "tenant"
    project = cloud.openstack("project", "create", unique("inside"), "--domain", domain["id"])
    assert project["domain_id"] == domain["id"] and project["parent_id"] == domain["id"]
    user = cloud.openstack("user", "create", unique("member"), "--domain", domain["id"])
    assert user["domain_id"] == domain["id"]

    assert_fault(call(cloud, "DELETE", f"/domains/{domain['id']}", admin_token), 403)
    assert_fault(call(cloud, "DELETE", "/domains/default", admin_token), 403)

    cloud.openstack("domain", "set", "--disable", domain["id"])
    assert cloud.openstack("domain", "show", domain["id"])["enabled"] is False
    cloud.openstack("domain", "delete", domain["id"])
    assert_fault(call(cloud, "GET", f"/domains/{domain['id']}", admin_token), 404)
    assert_fault(call(cloud, "GET", f"/projects/{project['id']}", admin_token), 404)
    assert_fault(call(cloud, "GET", f"/users/{user['id']}", admin_token), 404)


# -- who may see and do what -----------------------------------------------------------------------


def test_a_project_member_sees_only_its_own(
    cloud: RunningCloud, admin_token: str, demo_token: str
) -> None:
    admin = cloud.sdk("aiostack-admin")
    demo = cloud.sdk("aiostack")
    demo_project = demo.current_project_id
    demo_user = demo.current_user_id
    admin_project = admin.current_project_id

    assert_fault(call(cloud, "GET", "/projects", demo_token), 403)
    assert_fault(call(cloud, "GET", f"/projects/{admin_project}", demo_token), 403)
    assert_fault(call(cloud, "GET", "/projects/no-such-project", demo_token), 403)
    assert_fault(call(cloud, "GET", "/users", demo_token), 403)
    assert_fault(call(cloud, "GET", f"/users/{admin.current_user_id}", demo_token), 403)
    assert_fault(call(cloud, "GET", f"/users/{admin.current_user_id}/projects", demo_token), 403)
    assert_fault(call(cloud, "GET", "/groups", demo_token), 403)
    assert_fault(
        call(cloud, "POST", "/users", demo_token, json={"user": {"name": unique("sneaky")}}), 403
    )
    assert_fault(
        call(cloud, "POST", "/projects", demo_token, json={"project": {"name": unique("p")}}), 403
    )
    patch = {"project": {"description": "mine now"}}
    assert_fault(call(cloud, "PATCH", f"/projects/{demo_project}", demo_token, json=patch), 403)
    assert_fault(call(cloud, "DELETE", f"/projects/{demo_project}", demo_token), 403)

    own = call(cloud, "GET", f"/projects/{demo_project}", demo_token)
    assert own.status_code == 200 and own.json()["project"]["name"] == "demo"
    assert call(cloud, "GET", f"/users/{demo_user}", demo_token).status_code == 200
    mine = call(cloud, "GET", f"/users/{demo_user}/projects", demo_token)
    assert [p["name"] for p in mine.json()["projects"]] == ["demo"]
    # The CLI falls back to the user's own projects when the full list is refused.
    assert [p["Name"] for p in cloud.openstack("project", "list", cloud="aiostack")] == ["demo"]
    assert "403" in cloud.fails("user", "create", unique("nope"), cloud="aiostack")


def test_a_reader_can_read_but_not_write(cloud: RunningCloud) -> None:
    project = cloud.openstack("project", "create", unique("readonly"), "--tag", "keep")
    reader = new_user(cloud, "reader-pw", project=project["id"], role="reader")
    token = token_for(cloud, reader["name"], "reader-pw", project["name"])
    path = f"/projects/{project['id']}"

    assert call(cloud, "GET", path, token).json()["project"]["id"] == project["id"]
    assert call(cloud, "GET", path + "/tags", token).json()["tags"] == ["keep"]
    assert call(cloud, "GET", path + "/tags/keep", token).status_code == 204
    assert_fault(call(cloud, "PATCH", path, token, json={"project": {"enabled": False}}), 403)
    assert_fault(call(cloud, "PUT", path + "/tags/new", token), 403)
    assert_fault(call(cloud, "DELETE", path + "/tags", token), 403)
    assert_fault(call(cloud, "DELETE", path, token), 403)
    assert_fault(call(cloud, "POST", "/groups", token, json={"group": {"name": "g"}}), 403)
    body = {"user": {"enabled": False}}
    assert_fault(call(cloud, "PATCH", f"/users/{reader['id']}", token, json=body), 403)
    assert cloud.openstack("project", "show", project["id"])["tags"] == ["keep"]


# -- conflicts and bad input -----------------------------------------------------------------------


def test_duplicate_names_are_conflicts(cloud: RunningCloud, admin_token: str) -> None:
    name = unique("dup")
    for kind in ("project", "user", "group", "domain"):
        body = {kind: {"name": name}}
        assert call(cloud, "POST", f"/{kind}s", admin_token, json=body).status_code == 201
        again = call(cloud, "POST", f"/{kind}s", admin_token, json=body)
        assert "Duplicate entry" in assert_fault(again, 409)["message"]
    for kind in ("project", "user"):
        with pytest.raises(CliError, match=r"409|Conflict"):
            cloud.openstack(kind, "create", name)
    # The same name is fine in another domain.
    domain = call(cloud, "GET", f"/domains?name={name}", admin_token).json()["domains"][0]
    elsewhere = {"project": {"name": name, "domain_id": domain["id"]}}
    assert call(cloud, "POST", "/projects", admin_token, json=elsewhere).status_code == 201
    other = cloud.openstack("project", "create", unique("other"))
    rename = {"project": {"name": name}}
    assert_fault(call(cloud, "PATCH", f"/projects/{other['id']}", admin_token, json=rename), 409)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/projects", b'{"project": {"name": "x"'),
        ("/projects", b'{"project": {"name": "\xff\xfe"}}'),
        ("/projects", b'{"project": {"name": 5}}'),
        ("/projects", b'{"project": {"name": ""}}'),
        ("/projects", b'{"project": {"name": "   "}}'),
        ("/projects", b'{"project": {"name": "' + b"n" * 65 + b'"}}'),
        ("/projects", b'{"project": {"name": "x", "enabled": "true"}}'),
        ("/projects", b'{"project": {"name": "x", "tags": "a"}}'),
        ("/projects", b'{"project": {"name": "x", "tags": ["a,b"]}}'),
        ("/projects", b'{"project": {"name": "x", "parent_id": "no-such-project"}}'),
        ("/projects", b'{"project": {"name": "x", "domain_id": "no-such-domain"}}'),
        ("/projects", b'{"project": {"name": "x\\u0000y"}}'),
        ("/projects", b'{"project": {"name": "x", "note": "a\\u0000b"}}'),
        ("/projects", b'{"name": "x"}'),
        ("/projects", b'{"project": {"name": "x"}, "extra": 1}'),
        ("/projects", b'["project"]'),
        ("/users", b'{"user": {"name": "x", "enabled": 1}}'),
        ("/users", b'{"user": {"name": "x", "password": 1234}}'),
        ("/users", b'{"user": {"name": "x", "options": {"lock_password": "yes"}}}'),
        ("/users", b'{"user": {"name": "x", "options": {"no_such_option": true}}}'),
        ("/users", b'{"user": {"name": "' + b"u" * 256 + b'"}}'),
        ("/groups", b'{"group": {"name": null}}'),
        ("/groups", b'{"group": {"name": "x", "domain_id": 7}}'),
        ("/domains", b'{"domain": {"name": "x", "enabled": null}}'),
        ("/domains", b'{"domain": {"name": "x", "explicit_domain_id": "not/an/id"}}'),
    ],
)
def test_bad_bodies_are_400(cloud: RunningCloud, admin_token: str, path: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    assert_fault(call(cloud, "POST", path, admin_token, data=body, headers=headers), 400)


def test_bad_updates_and_unknown_ids(cloud: RunningCloud, admin_token: str) -> None:
    project = cloud.openstack("project", "create", unique("target"))
    user = cloud.openstack("user", "create", unique("target"))
    path = f"/projects/{project['id']}"
    for body in (
        {"project": {}},
        {"project": {"name": None}},
        {"project": {"enabled": "false"}},
        {"project": {"domain_id": "elsewhere"}},
        {"project": {"is_domain": True}},
        {"project": {"id": "another-id"}},
    ):
        assert_fault(call(cloud, "PATCH", path, admin_token, json=body), 400)
    assert_fault(call(cloud, "PATCH", path, admin_token, json={"project": {"parent_id": "x"}}), 403)
    assert_fault(
        call(cloud, "PATCH", f"/users/{user['id']}", admin_token, json={"user": {"name": 1}}), 400
    )
    for method, missing in (
        ("GET", "/projects/no-such-project"),
        ("PATCH", "/projects/no-such-project"),
        ("DELETE", "/projects/no-such-project"),
        ("GET", "/users/no-such-user"),
        ("DELETE", "/users/no-such-user"),
        ("GET", "/users/no-such-user/groups"),
        ("GET", "/users/no-such-user/projects"),
        ("GET", "/groups/no-such-group"),
        ("GET", "/groups/no-such-group/users"),
        ("PUT", f"/groups/no-such-group/users/{user['id']}"),
        ("HEAD", f"/groups/no-such-group/users/{user['id']}"),
        ("GET", "/domains/no-such-domain"),
        ("DELETE", "/domains/no-such-domain"),
        ("GET", "/projects/a%00b"),
        ("GET", "/projects/no-such-project/tags"),
    ):
        kw: dict[str, Any] = {}
        if method == "PATCH":
            kw["json"] = {"project": {"description": "x"}}
        reply = call(cloud, method, missing, admin_token, **kw)
        if method == "HEAD":
            assert reply.status_code == 404
        else:
            assert_fault(reply, 404)
    group = cloud.openstack("group", "create", unique("g"))
    assert_fault(call(cloud, "PUT", f"/groups/{group['id']}/users/no-such-user", admin_token), 404)
    assert_fault(
        call(cloud, "DELETE", f"/groups/{group['id']}/users/{user['id']}", admin_token), 404
    )
    for query in ("enabled=maybe", "name=a%00b", "is_domain=perhaps"):
        assert_fault(call(cloud, "GET", "/projects?" + query, admin_token), 400)


def test_openapi_lists_the_filters(cloud: RunningCloud) -> None:
    document = requests.get(cloud.url + "/openapi.json", timeout=TIMEOUT).json()
    listing = document["paths"]["/identity/v3/projects"]["get"]
    names = {p["name"] for p in listing.get("parameters", [])}
    assert {"name", "domain_id", "enabled", "parent_id", "tags", "tags-any", "not-tags"} <= names


# -- password policy -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    """A second aiostack that refuses passwords shorter than 12 characters."""
    database = asyncio.run(create_database())
    proc, running = start_cloud(
        tmp_path_factory.mktemp("strict"), database, password_min_length="12"
    )
    try:
        yield running
    finally:
        stop_cloud(proc)
        asyncio.run(drop_database(database))


def test_short_passwords_are_refused(strict_cloud: RunningCloud) -> None:
    cloud = strict_cloud
    token = str(cloud.sdk("aiostack-admin").session.get_token())
    short = {"user": {"name": unique("short"), "password": "too-short"}}
    assert "12" in assert_fault(call(cloud, "POST", "/users", token, json=short), 400)["message"]
    long_enough = {"user": {"name": unique("long"), "password": "a" * 12}}
    user = call(cloud, "POST", "/users", token, json=long_enough).json()["user"]
    reset = {"user": {"password": "short"}}
    assert_fault(call(cloud, "PATCH", f"/users/{user['id']}", token, json=reset), 400)
    assert login(cloud, user["name"], "a" * 12).status_code == 201
