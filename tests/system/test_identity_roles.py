"""Roles, implied roles, grants and role assignments, driven like a user: the openstack CLI, plus
raw HTTP for what the CLI cannot send (bad bodies, HEAD checks, other callers' tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.system.conftest import RunningCloud, unique

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Member:
    """A fresh user with a password and a fresh project, with no role anywhere yet."""

    user_id: str
    user: str
    project_id: str
    project: str


@pytest.fixture(scope="module")
def admin_token(cloud: RunningCloud) -> str:
    return str(cloud.openstack("token", "issue")["id"])


@pytest.fixture(scope="module")
def role_ids(cloud: RunningCloud) -> dict[str, str]:
    return {r["Name"]: r["ID"] for r in cloud.openstack("role", "list")}


@pytest.fixture
def member(cloud: RunningCloud) -> Member:
    project = cloud.openstack("project", "create", "--domain", "default", unique("proj"))
    user = cloud.openstack(
        "user", "create", "--domain", "default", "--password", PASSWORD, unique("user")
    )
    return Member(user["id"], user["name"], project["id"], project["name"])


def call(
    cloud: RunningCloud,
    token: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw: str | None = None,
) -> requests.Response:
    headers = {"X-Auth-Token": token}
    if raw is not None:
        headers["Content-Type"] = "application/json"
    return requests.request(
        method, cloud.url + "/identity/v3" + path, headers=headers, json=body, data=raw, timeout=10
    )


def password_auth(cloud: RunningCloud, user: str, scope: dict[str, Any]) -> requests.Response:
    """``POST /auth/tokens`` for ``user`` (password) on ``scope``."""
    password = {"user": {"name": user, "domain": {"id": "default"}, "password": PASSWORD}}
    auth = {"identity": {"methods": ["password"], "password": password}, "scope": scope}
    return requests.post(cloud.url + "/identity/v3/auth/tokens", json={"auth": auth}, timeout=10)


def user_token(cloud: RunningCloud, user: str, scope: dict[str, Any]) -> tuple[str, list[str]]:
    """A token for ``user`` on ``scope``, with the names of the roles it carries."""
    reply = password_auth(cloud, user, scope)
    assert reply.status_code == 201, reply.text
    return reply.headers["X-Subject-Token"], sorted(
        r["name"] for r in reply.json()["token"]["roles"]
    )


def catalog_status(cloud: RunningCloud, token: str) -> int:
    reply = requests.get(
        cloud.url + "/identity/v3/auth/catalog", headers={"X-Auth-Token": token}, timeout=10
    )
    return reply.status_code


def assignments(cloud: RunningCloud, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cloud.openstack("role", "assignment", "list", *args)
    return rows


def row(
    role: str,
    *,
    user: str = "",
    group: str = "",
    project: str = "",
    domain: str = "",
    system: str = "",
    inherited: bool = False,
) -> dict[str, Any]:
    """A ``role assignment list --names`` row."""
    return {
        "Role": role,
        "User": user,
        "Group": group,
        "Project": project,
        "Domain": domain,
        "System": system,
        "Inherited": inherited,
    }


# -- roles ----------------------------------------------------------------------------------------


def test_role_create_show_list_set_delete(cloud: RunningCloud, admin_token: str) -> None:
    name = unique("role")
    created = cloud.openstack("role", "create", "--description", "Runs the tests", name)
    assert created == {
        "id": created["id"],
        "name": name,
        "domain_id": None,
        "description": "Runs the tests",
    }
    assert cloud.openstack("role", "show", name) == created
    assert {"ID": created["id"], "Name": name} in cloud.openstack("role", "list")

    cloud.openstack("role", "set", "--description", "Still runs them", name)
    assert cloud.openstack("role", "show", created["id"])["description"] == "Still runs them"
    assert "409" in cloud.fails("role", "create", name)

    body = call(cloud, admin_token, "GET", f"/roles/{created['id']}").json()["role"]
    assert body["options"] == {}
    assert body["links"]["self"] == f"{cloud.url}/identity/v3/roles/{created['id']}"
    found = call(cloud, admin_token, "GET", f"/roles?name={name}").json()["roles"]
    assert [r["id"] for r in found] == [created["id"]]

    cloud.openstack("role", "delete", name)
    assert call(cloud, admin_token, "GET", f"/roles/{created['id']}").status_code == 404
    assert name not in {r["Name"] for r in cloud.openstack("role", "list")}
    cloud.fails("role", "show", name)


def test_domain_specific_role_stays_in_its_domain(
    cloud: RunningCloud, admin_token: str, member: Member
) -> None:
    name = unique("domrole")
    created = cloud.openstack("role", "create", "--domain", "default", name)
    assert created["domain_id"] == "default"
    assert {"ID": created["id"], "Name": name, "Domain": "Default"} in cloud.openstack(
        "role", "list", "--domain", "default"
    )
    assert name not in {r["Name"] for r in cloud.openstack("role", "list")}  # global roles only
    # The same name may exist again as a global role.
    cloud.openstack("role", "create", name)

    grant = f"/projects/{member.project_id}/users/{member.user_id}/roles/{created['id']}"
    assert call(cloud, admin_token, "PUT", grant).status_code == 204
    system = call(
        cloud, admin_token, "PUT", f"/system/users/{member.user_id}/roles/{created['id']}"
    )
    assert system.status_code == 400
    assert "domain-specific" in system.json()["error"]["message"]
    cloud.openstack("role", "delete", "--domain", "default", name)
    cloud.openstack("role", "delete", name)


# -- implied roles --------------------------------------------------------------------------------


def test_bootstrap_implications_are_listed(cloud: RunningCloud) -> None:
    rules = {
        (r["Prior Role Name"], r["Implied Role Name"])
        for r in cloud.openstack("implied", "role", "list")
    }
    assert {("admin", "member"), ("member", "reader")} <= rules


def test_implied_role_create_and_delete(
    cloud: RunningCloud, admin_token: str, role_ids: dict[str, str]
) -> None:
    prior = cloud.openstack("role", "create", unique("prior"))
    implied = cloud.openstack("role", "create", unique("implied"))
    made = cloud.openstack(
        "implied", "role", "create", prior["name"], "--implied-role", implied["name"]
    )
    assert made == {"implies": implied["id"], "prior_role": prior["id"]}
    assert {
        "Prior Role ID": prior["id"],
        "Prior Role Name": prior["name"],
        "Implied Role ID": implied["id"],
        "Implied Role Name": implied["name"],
    } in (cloud.openstack("implied", "role", "list"))
    assert "409" in cloud.fails(
        "implied", "role", "create", prior["name"], "--implied-role", implied["name"]
    )
    rule = f"/roles/{prior['id']}/implies/{implied['id']}"
    assert call(cloud, admin_token, "HEAD", rule).status_code == 204
    shown = call(cloud, admin_token, "GET", rule).json()["role_inference"]
    assert (shown["prior_role"]["name"], shown["implies"]["name"]) == (
        prior["name"],
        implied["name"],
    )
    listed = call(cloud, admin_token, "GET", f"/roles/{prior['id']}/implies").json()
    assert [r["id"] for r in listed["role_inference"]["implies"]] == [implied["id"]]
    # Nobody becomes an admin by implication.
    assert "403" in cloud.fails(
        "implied", "role", "create", prior["name"], "--implied-role", "admin"
    )

    cloud.openstack("implied", "role", "delete", prior["name"], "--implied-role", implied["name"])
    assert call(cloud, admin_token, "HEAD", rule).status_code == 404
    assert call(cloud, admin_token, "DELETE", rule).status_code == 404
    assert (prior["name"], implied["name"]) not in {
        (r["Prior Role Name"], r["Implied Role Name"])
        for r in cloud.openstack("implied", "role", "list")
    }
    cloud.openstack("role", "delete", prior["name"], implied["name"])


# -- grants and assignments -----------------------------------------------------------------------


def test_project_grant_is_listed_effective_and_revoked_at_once(
    cloud: RunningCloud, admin_token: str, member: Member, role_ids: dict[str, str]
) -> None:
    cloud.openstack("role", "add", "--project", member.project, "--user", member.user, "member")
    cloud.openstack("role", "add", "--project", member.project, "--user", member.user, "member")
    user, project = f"{member.user}@Default", f"{member.project}@Default"

    assert assignments(cloud, "--user", member.user, "--names") == [
        row("member", user=user, project=project)
    ]
    assert assignments(cloud, "--project", member.project, "--names") == [
        row("member", user=user, project=project)
    ]
    effective = assignments(
        cloud, "--user", member.user, "--project", member.project, "--effective", "--names"
    )
    assert sorted(effective, key=lambda r: r["Role"]) == [
        row("member", user=user, project=project),
        row("reader", user=user, project=project),
    ]
    assert assignments(cloud, "--user", member.user, "--role", "reader", "--effective") == [
        row(role_ids["reader"], user=member.user_id, project=member.project_id)
    ]
    raw = call(
        cloud,
        admin_token,
        "GET",
        f"/role_assignments?user.id={member.user_id}&effective&role.id={role_ids['reader']}",
    ).json()["role_assignments"]
    base = f"{cloud.url}/identity/v3"
    assert raw == [
        {
            "role": {"id": role_ids["reader"]},
            "user": {"id": member.user_id},
            "scope": {"project": {"id": member.project_id}},
            "links": {
                "assignment": f"{base}/projects/{member.project_id}/users/{member.user_id}/roles/"
                f"{role_ids['member']}",
                "prior_role": f"{base}/roles/{role_ids['member']}/implies/{role_ids['reader']}",
            },
        }
    ]
    grant = f"/projects/{member.project_id}/users/{member.user_id}/roles/{role_ids['member']}"
    assert call(cloud, admin_token, "HEAD", grant).status_code == 204
    listed = call(cloud, admin_token, "GET", grant.rsplit("/", 1)[0]).json()["roles"]
    assert [r["name"] for r in listed] == ["member"]

    token, roles = user_token(cloud, member.user, {"project": {"id": member.project_id}})
    assert roles == ["member", "reader"]
    assert catalog_status(cloud, token) == 200

    cloud.openstack("role", "remove", "--project", member.project, "--user", member.user, "member")
    assert catalog_status(cloud, token) == 401
    assert assignments(cloud, "--user", member.user) == []
    assert call(cloud, admin_token, "HEAD", grant).status_code == 404
    assert call(cloud, admin_token, "DELETE", grant).status_code == 404


def test_domain_and_system_grants(
    cloud: RunningCloud, admin_token: str, member: Member, role_ids: dict[str, str]
) -> None:
    cloud.openstack("role", "add", "--domain", "default", "--user", member.user, "reader")
    cloud.openstack("role", "add", "--system", "all", "--user", member.user, "reader")
    user = f"{member.user}@Default"
    listed = assignments(cloud, "--user", member.user, "--names")
    assert sorted(listed, key=lambda r: r["System"]) == [
        row("reader", user=user, domain="Default"),
        row("reader", user=user, system="all"),
    ]
    assert assignments(cloud, "--user", member.user, "--system", "all", "--names") == [
        row("reader", user=user, system="all")
    ]
    assert assignments(cloud, "--user", member.user, "--domain", "default", "--names") == [
        row("reader", user=user, domain="Default")
    ]
    # As in Keystone, effective listings leave system grants out unless asked for them.
    assert assignments(cloud, "--user", member.user, "--effective", "--names") == [
        row("reader", user=user, domain="Default")
    ]
    assert assignments(
        cloud, "--user", member.user, "--system", "all", "--effective", "--names"
    ) == [row("reader", user=user, system="all")]
    system_grant = f"/system/users/{member.user_id}/roles/{role_ids['reader']}"
    assert call(cloud, admin_token, "HEAD", system_grant).status_code == 204
    system_roles = call(cloud, admin_token, "GET", f"/system/users/{member.user_id}/roles")
    assert [r["name"] for r in system_roles.json()["roles"]] == ["reader"]

    token, roles = user_token(cloud, member.user, {"system": {"all": True}})
    assert roles == ["reader"]
    assert catalog_status(cloud, token) == 200
    cloud.openstack("role", "remove", "--system", "all", "--user", member.user, "reader")
    assert catalog_status(cloud, token) == 401
    assert call(cloud, admin_token, "HEAD", system_grant).status_code == 404

    cloud.openstack("role", "remove", "--domain", "default", "--user", member.user, "reader")
    assert assignments(cloud, "--user", member.user) == []


def test_group_grant_is_seen_effectively_by_its_member(
    cloud: RunningCloud, admin_token: str, member: Member, role_ids: dict[str, str]
) -> None:
    group = cloud.openstack("group", "create", "--domain", "default", unique("group"))
    cloud.openstack("group", "add", "user", group["name"], member.user)
    cloud.openstack("role", "add", "--project", member.project, "--group", group["name"], "member")
    user, project = f"{member.user}@Default", f"{member.project}@Default"

    assert assignments(cloud, "--group", group["name"], "--names") == [
        row("member", group=f"{group['name']}@Default", project=project)
    ]
    assert assignments(cloud, "--user", member.user, "--names") == []  # not a direct grant
    effective = assignments(cloud, "--user", member.user, "--effective", "--names")
    assert sorted(effective, key=lambda r: r["Role"]) == [
        row("member", user=user, project=project),
        row("reader", user=user, project=project),
    ]
    raw = call(
        cloud,
        admin_token,
        "GET",
        f"/role_assignments?effective&user.id={member.user_id}&role.id={role_ids['member']}",
    ).json()["role_assignments"]
    base = f"{cloud.url}/identity/v3"
    assert [entry["links"] for entry in raw] == [
        {
            "assignment": f"{base}/projects/{member.project_id}/groups/{group['id']}/roles/"
            f"{role_ids['member']}",
            "membership": f"{base}/groups/{group['id']}/users/{member.user_id}",
        }
    ]
    bad = call(cloud, admin_token, "GET", f"/role_assignments?effective&group.id={group['id']}")
    assert bad.status_code == 400

    token, roles = user_token(cloud, member.user, {"project": {"id": member.project_id}})
    assert roles == ["member", "reader"]
    cloud.openstack(
        "role", "remove", "--project", member.project, "--group", group["name"], "member"
    )
    assert catalog_status(cloud, token) == 401  # every member's tokens, at once


def test_inherited_domain_grant_reaches_the_projects(cloud: RunningCloud, member: Member) -> None:
    cloud.openstack(
        "role", "add", "--domain", "default", "--user", member.user, "--inherited", "member"
    )
    user = f"{member.user}@Default"
    assert assignments(cloud, "--user", member.user, "--inherited", "--names") == [
        row("member", user=user, domain="Default", inherited=True)
    ]
    effective = assignments(
        cloud, "--user", member.user, "--project", member.project, "--effective", "--names"
    )
    project = f"{member.project}@Default"
    assert sorted(effective, key=lambda r: r["Role"]) == [
        row("member", user=user, project=project, inherited=True),
        row("reader", user=user, project=project, inherited=True),
    ]
    token, roles = user_token(cloud, member.user, {"project": {"id": member.project_id}})
    assert roles == ["member", "reader"]
    cloud.openstack(
        "role", "remove", "--domain", "default", "--user", member.user, "--inherited", "member"
    )
    assert catalog_status(cloud, token) == 401


def test_inherited_project_grant_reaches_the_subtree_only(
    cloud: RunningCloud, admin_token: str, member: Member, role_ids: dict[str, str]
) -> None:
    child = cloud.openstack(
        "project", "create", "--domain", "default", "--parent", member.project, unique("child")
    )
    cloud.openstack(
        "role", "add", "--project", member.project, "--user", member.user, "--inherited", "member"
    )
    assert assignments(cloud, "--user", member.user, "--effective") == [
        row(role, user=member.user_id, project=child["id"], inherited=True)
        for role in (role_ids["member"], role_ids["reader"])
    ]
    tree = call(
        cloud,
        admin_token,
        "GET",
        f"/role_assignments?scope.project.id={member.project_id}&include_subtree=true",
    ).json()["role_assignments"]
    assert tree == [
        {
            "role": {"id": role_ids["member"]},
            "user": {"id": member.user_id},
            "scope": {"project": {"id": member.project_id}, "OS-INHERIT:inherited_to": "projects"},
            "links": {
                "assignment": f"{cloud.url}/identity/v3/OS-INHERIT/projects/{member.project_id}"
                f"/users/{member.user_id}/roles/{role_ids['member']}/inherited_to_projects"
            },
        }
    ]
    child_token, roles = user_token(cloud, member.user, {"project": {"id": child["id"]}})
    assert roles == ["member", "reader"]
    # Not on the project itself: the grant is inherited by its subprojects only.
    assert (
        password_auth(cloud, member.user, {"project": {"id": member.project_id}}).status_code == 401
    )
    cloud.openstack(
        "role",
        "remove",
        "--project",
        member.project,
        "--user",
        member.user,
        "--inherited",
        "member",
    )
    assert catalog_status(cloud, child_token) == 401


def test_deleting_a_role_takes_its_grants_and_tokens(
    cloud: RunningCloud, admin_token: str, member: Member
) -> None:
    role = cloud.openstack("role", "create", unique("doomed"))
    cloud.openstack("implied", "role", "create", role["name"], "--implied-role", "reader")
    cloud.openstack("role", "add", "--project", member.project, "--user", member.user, role["name"])
    token, roles = user_token(cloud, member.user, {"project": {"id": member.project_id}})
    assert roles == sorted([role["name"], "reader"])

    cloud.openstack("role", "delete", role["name"])
    assert catalog_status(cloud, token) == 401
    assert assignments(cloud, "--user", member.user) == []
    assert role["id"] not in {
        r["Prior Role ID"] for r in cloud.openstack("implied", "role", "list")
    }
    grant = f"/projects/{member.project_id}/users/{member.user_id}/roles/{role['id']}"
    assert call(cloud, admin_token, "HEAD", grant).status_code == 404


# -- refusals -------------------------------------------------------------------------------------


def test_unknown_things_are_404(
    cloud: RunningCloud, admin_token: str, member: Member, role_ids: dict[str, str]
) -> None:
    # The CLI looks the user up by name first, finds nothing and grants nothing.
    cloud.fails("role", "add", "--project", member.project, "--user", "nosuch", "member")
    assert assignments(cloud, "--user", member.user) == []
    cloud.fails("role", "show", "nosuch-role")

    member_role = role_ids["member"]
    p, u = member.project_id, member.user_id
    for path, missing in [
        (f"/projects/nosuch/users/{u}/roles/{member_role}", "project"),
        (f"/projects/{p}/users/nosuch/roles/{member_role}", "user"),
        (f"/projects/{p}/users/{u}/roles/nosuch", "role"),
        (f"/projects/{p}/groups/nosuch/roles/{member_role}", "group"),
        (f"/domains/nosuch/users/{u}/roles/{member_role}", "domain"),
        (f"/system/users/nosuch/roles/{member_role}", "user"),
        (
            f"/OS-INHERIT/domains/nosuch/users/{u}/roles/{member_role}/inherited_to_projects",
            "domain",
        ),
    ]:
        reply = call(cloud, admin_token, "PUT", path)
        assert reply.status_code == 404, path
        assert reply.json()["error"]["message"] == f"Could not find {missing}: nosuch.", path
    for method in ("HEAD", "GET", "DELETE"):
        reply = call(cloud, admin_token, method, f"/projects/{p}/users/{u}/roles/{member_role}")
        assert reply.status_code == 404, method  # never granted
    assert call(cloud, admin_token, "GET", "/roles/nosuch").status_code == 404
    assert call(cloud, admin_token, "GET", "/roles/nosuch/implies").status_code == 404
    assert call(cloud, admin_token, "DELETE", "/roles/nosuch").status_code == 404
    assert (
        call(cloud, admin_token, "PUT", f"/roles/nosuch/implies/{member_role}").status_code == 404
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/roles", "{not json"),
        ("POST", "/roles", '{"role": {"name": 5}}'),
        ("POST", "/roles", '{"role": {"name": "   "}}'),
        ("POST", "/roles", '{"role": {}}'),
        ("POST", "/roles", '{"role": "admin"}'),
        ("POST", "/roles", '[{"role": {"name": "x"}}]'),
        ("POST", "/roles", '{"role": {"name": "x"}, "surprise": 1}'),
        ("POST", "/roles", '{"role": {"name": "x", "description": 7}}'),
        ("POST", "/roles", '{"role": {"name": "x", "options": {"immutable": "yes"}}}'),
        ("POST", "/roles", '{"role": {"name": "x", "options": {"sticky": true}}}'),
        ("POST", "/roles", '{"role": {"name": "' + "x" * 256 + '"}}'),
        ("PATCH", "/roles/{reader}", '{"role": {}}'),
        ("PATCH", "/roles/{reader}", '{"role": {"name": null}}'),
        ("PATCH", "/roles/{reader}", '{"role": {"domain_id": "default"}}'),
        ("GET", "/role_assignments?user.id=a&group.id=b", None),
        ("GET", "/role_assignments?scope.project.id=a&scope.domain.id=b", None),
        ("GET", "/role_assignments?scope.system=all&scope.project.id=a", None),
        ("GET", "/role_assignments?effective&group.id=b", None),
        (
            "GET",
            "/role_assignments?effective&scope.domain.id=default"
            "&scope.OS-INHERIT:inherited_to=projects",
            None,
        ),
        ("GET", "/role_assignments?include_subtree", None),
    ],
)
def test_bad_input_is_400(
    cloud: RunningCloud,
    admin_token: str,
    role_ids: dict[str, str],
    method: str,
    path: str,
    body: str | None,
) -> None:
    reply = call(cloud, admin_token, method, path.format(reader=role_ids["reader"]), raw=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == 400


def test_duplicate_role_name_is_409(cloud: RunningCloud, admin_token: str) -> None:
    reply = call(cloud, admin_token, "POST", "/roles", body={"role": {"name": "member"}})
    assert reply.status_code == 409
    assert reply.json()["error"]["message"] == (
        "Conflict occurred attempting to store role - Duplicate entry found with name member."
    )


def test_a_project_member_manages_no_roles(
    cloud: RunningCloud, member: Member, role_ids: dict[str, str]
) -> None:
    assert "403" in cloud.fails("role", "create", unique("mine"), cloud="aiostack")
    assert "403" in cloud.fails("role", "assignment", "list", cloud="aiostack")
    demo_token = str(cloud.openstack("token", "issue", cloud="aiostack")["id"])
    grant = f"/projects/{member.project_id}/users/{member.user_id}/roles/{role_ids['admin']}"
    assert call(cloud, demo_token, "PUT", grant).status_code == 403
    assert call(cloud, demo_token, "GET", "/role_assignments").status_code == 403
    assert call(cloud, demo_token, "DELETE", f"/roles/{role_ids['reader']}").status_code == 403
