"""The oslo.policy check-string engine and Keystone's default identity policy (no database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud.api.policy import Policy, PolicyDenied, PolicyError
from cloud.identity.policies import DEFAULT_RULES


def check(text: str, creds: dict[str, Any], target: dict[str, Any] | None = None) -> bool:
    return Policy({"r": text}).allowed("r", creds, target)


def roles(*names: str) -> dict[str, Any]:
    return {"roles": list(names)}


# --- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "granted", "expected"),
    [
        # and binds tighter than or
        ("role:a or role:b and role:c", ["a"], True),
        ("role:a or role:b and role:c", ["b"], False),
        ("(role:a or role:b) and role:c", ["a"], False),
        ("(role:a or role:b) and role:c", ["a", "c"], True),
        # not binds tighter than and
        ("not role:a and role:b", ["b"], True),
        ("not role:a and role:b", ["a", "b"], False),
        ("not (role:a and role:b)", ["a"], True),
        ("not (role:a and role:b)", ["a", "b"], False),
        ("not not role:a", ["a"], True),
        ("((role:a))", ["a"], True),
        ("role:a AND NOT role:b Or role:c", ["a", "b"], False),
        ("role:a AND NOT role:b Or role:c", ["c"], True),
        ("role:a and role:b and role:c", ["a", "b"], False),
        ("role:a or role:b or role:c", ["c"], True),
    ],
)
def test_operators_and_precedence(text: str, granted: list[str], expected: bool) -> None:
    assert check(text, roles(*granted)) is expected


@pytest.mark.parametrize(
    ("text", "expected"), [("@", True), ("!", False), ("", True), ("   ", True)]
)
def test_constants(text: str, expected: bool) -> None:
    assert check(text, {}) is expected


def test_role_matches_case_insensitively_and_needs_the_role() -> None:
    assert check("role:Admin", roles("ADMIN"))
    assert not check("role:admin", roles("member", "reader"))
    assert not check("role:admin", {})
    # A bare string is one role, not a list of one-letter roles.
    assert not check("role:a", {"roles": "admin"})
    assert check("role:admin", {"roles": "admin"})


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("system_scope:all", "all", True),
        ("system_scope:all", "All", False),
        ("system_scope:'all'", "all", True),
        ('system_scope:"all"', "all", True),
        ("system_scope:all", None, False),
        ("name:'a b'", "a b", True),
        ("name:'x:(y) or z'", "x:(y) or z", True),
        ("name:'True'", "True", True),
        ("name:True", "True", False),  # True is the boolean, not the string
        ("name:7", 7, True),  # values compare as strings
        ("name:x", ["w", "x"], True),  # a list credential matches if any element does
        ("name:x", ["w"], False),
    ],
)
def test_generic_literals(text: str, value: Any, expected: bool) -> None:
    assert check(text, {"name": value, "system_scope": value}) is expected


def test_booleans_match_booleans_only() -> None:
    assert check("is_admin:True", {"is_admin": True})
    assert not check("is_admin:True", {"is_admin": False})
    assert not check("is_admin:True", {"is_admin": "True"})
    assert not check("is_admin:True", {"is_admin": 1})
    assert not check("is_admin:True", {})
    assert check("is_admin:False", {"is_admin": False})
    assert not check("is_admin:False", {})


def test_none_literal_matches_a_missing_or_null_credential() -> None:
    assert check("domain_id:None", {})
    assert check("domain_id:None", {"domain_id": None})
    assert not check("domain_id:None", {"domain_id": "d"})
    assert check("not domain_id:None", {"domain_id": "d"})


def test_substitution_from_the_target() -> None:
    rule = "project_id:%(target.project.id)s"
    assert check(rule, {"project_id": "p1"}, {"target.project.id": "p1"})
    assert not check(rule, {"project_id": "p1"}, {"target.project.id": "p2"})
    # Missing substitution: false, never an error.
    assert not check(rule, {"project_id": "p1"}, {})
    assert not check(rule, {"project_id": "p1"}, None)
    assert not check(rule, {"project_id": "p1"}, {"target.project": "p1"})
    # A null on both sides is not a match: an unscoped token must not own a null-id resource.
    assert not check(rule, {"project_id": None}, {"target.project.id": None})
    assert not check(rule, {}, {"target.project.id": None})
    assert not check(rule, {}, {"target.project.id": "p1"})
    # Integers in the target compare with string credentials.
    assert check("user_id:%(uid)s", {"user_id": "42"}, {"uid": 42})


def test_reverse_form_with_a_literal_on_the_left() -> None:
    rule = "'member':%(target.role.name)s or 'reader':%(target.role.name)s"
    assert check(rule, {}, {"target.role.name": "member"})
    assert check(rule, {}, {"target.role.name": "reader"})
    assert not check(rule, {}, {"target.role.name": "admin"})
    assert not check(rule, {}, {})
    none = "None:%(target.role.domain_id)s"
    assert check(none, {}, {"target.role.domain_id": None})
    assert not check(none, {}, {"target.role.domain_id": "d"})
    assert not check(none, {}, {})  # missing is not null
    assert check("1:%(n)s", {}, {"n": 1})
    assert check("True:%(flag)s", {}, {"flag": True})
    assert not check("True:%(flag)s", {}, {"flag": "True"})
    assert check("'a':'a'", {})
    assert not check("'a':b", {})


def test_nested_and_dotted_targets_are_equivalent() -> None:
    rule = "project_id:%(target.project.id)s and domain_id:%(target.project.domain.id)s"
    creds = {"project_id": "p", "domain_id": "d"}
    nested = {"target": {"project": {"id": "p", "domain": {"id": "d"}}}}
    dotted = {"target.project.id": "p", "target.project.domain.id": "d"}
    mixed = {"target.project": {"id": "p"}, "target": {"project.domain": {"id": "d"}}}
    for target in (nested, dotted, mixed):
        assert Policy({"r": rule}).allowed("r", creds, target), target
    assert not check(rule, creds, {"target": {"project": {"id": "p", "domain": {"id": "x"}}}})


# --- rule references, errors, files ------------------------------------------------------------


def test_rule_references_follow_overrides() -> None:
    defaults = {"base": "role:admin", "op": "rule:base or role:special"}
    assert Policy(defaults).allowed("op", roles("admin"))
    assert Policy(defaults).allowed("op", roles("special"))
    assert not Policy(defaults).allowed("op", roles("member"))
    # Overriding a base rule changes every rule that refers to it.
    overridden = Policy(defaults, {"base": "role:member"})
    assert overridden.allowed("op", roles("member"))
    assert not overridden.allowed("op", roles("admin"))


@pytest.mark.parametrize(
    ("rules", "cycle"),
    [
        ({"a": "rule:a"}, "a -> a"),
        ({"a": "rule:b", "b": "role:x or rule:a"}, "a -> b -> a"),
        ({"x": "rule:a", "a": "rule:b", "b": "rule:c", "c": "not rule:a"}, "a -> b -> c -> a"),
    ],
)
def test_reference_cycles_are_rejected(rules: dict[str, str], cycle: str) -> None:
    with pytest.raises(PolicyError, match="cycle") as err:
        Policy(rules)
    assert cycle in str(err.value)


def test_a_shared_rule_is_not_a_cycle() -> None:
    policy = Policy({"a": "rule:b and rule:c", "b": "rule:c", "c": "role:x"})
    assert policy.allowed("a", roles("x"))


def test_unknown_rule_reference_names_both_rules() -> None:
    with pytest.raises(PolicyError, match=r"'op' references unknown rule 'nope'"):
        Policy({"op": "role:a or rule:nope"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("role:a or", "unexpected end"),
        ("role:a and and role:b", "unexpected 'and'"),
        ("(role:a", "unbalanced '('"),
        ("role:a)", "unexpected ')'"),
        ("()", "unexpected ')'"),
        ("role:a role:b", "unexpected 'role:b'"),
        ("admin", "expected KIND:VALUE"),
        (":x", "expected KIND:VALUE"),
        ("role:", "empty value"),
        ("name:'abc", "unterminated quote"),
        ("user_id:%(user_id)s-x", "substitution must be the whole value"),
        ("%(user_id)s:x", "substitution may only be on the right"),
        ("user_id:%()s", "malformed substitution"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        Policy({"ok": "@", "broken": text})
    assert message in str(err.value)
    assert "'broken'" in str(err.value)


def test_rules_must_be_strings() -> None:
    with pytest.raises(PolicyError, match="check strings"):
        Policy({"r": 1})  # type: ignore[dict-item]
    with pytest.raises(PolicyError, match="check strings"):
        Policy({"r": "@"}, {"r": None})  # type: ignore[dict-item]


def test_allowed_and_enforce() -> None:
    policy = Policy({"r": "role:a"})
    with pytest.raises(PolicyError, match="unknown policy rule 'missing'"):
        policy.allowed("missing", roles("a"))
    with pytest.raises(PolicyError):
        policy.enforce("missing", roles("a"))
    policy.enforce("r", roles("a"))
    with pytest.raises(PolicyDenied) as err:
        policy.enforce("r", roles("b"))
    assert err.value.rule == "r"
    assert "r" in str(err.value)


def test_rules_dump_is_effective_and_a_copy() -> None:
    policy = Policy({"a": "role:x", "b": "@"}, {"b": "!", "c": "rule:a"})
    assert policy.rules() == {"a": "role:x", "b": "!", "c": "rule:a"}
    policy.rules()["a"] = "@"
    assert not policy.allowed("a", {})


DEFAULTS = {"base": "role:admin", "op": "rule:base"}


def test_from_file_yaml_overrides(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("# operators' overrides\nbase: 'role:operator'\nextra: '!'\n")
    policy = Policy.from_file(DEFAULTS, path)
    assert policy.allowed("op", roles("operator"))
    assert not policy.allowed("op", roles("admin"))
    assert policy.rules()["extra"] == "!"


def test_from_file_json_overrides(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"op": "role:member"}))
    policy = Policy.from_file(DEFAULTS, path)
    assert policy.allowed("op", roles("member"))
    assert not policy.allowed("op", roles("admin"))
    assert policy.rules()["base"] == "role:admin"


def test_from_file_none_or_empty_is_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    for path in (None, empty):
        policy = Policy.from_file(DEFAULTS, path)
        assert policy.rules() == DEFAULTS
        assert policy.allowed("op", roles("admin"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- role:admin\n", "must map rule names"),
        ("op: 1\n", "must map rule names"),
        ("op: [role:admin]\n", "must map rule names"),
        ("op: 'role:admin\n", "neither YAML nor JSON"),
        ('{"op": "role:a or"}', "unexpected end"),
        ('{"op": "rule:ghost"}', "unknown rule 'ghost'"),
    ],
)
def test_from_file_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError, match=message):
        Policy.from_file(DEFAULTS, path)


def test_from_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.from_file(DEFAULTS, tmp_path / "absent.yaml")


# --- Keystone's default identity policy --------------------------------------------------------

POLICY = Policy(DEFAULT_RULES)

OPERATIONS = [
    "get_domain",
    "list_domains",
    "create_domain",
    "update_domain",
    "delete_domain",
    "get_project",
    "list_projects",
    "list_user_projects",
    "create_project",
    "update_project",
    "delete_project",
    "list_project_tags",
    "get_project_tag",
    "update_project_tags",
    "create_project_tag",
    "delete_project_tags",
    "delete_project_tag",
    "get_user",
    "list_users",
    "create_user",
    "update_user",
    "delete_user",
    "change_password",
    "list_groups",
    "list_groups_for_user",
    "get_group",
    "create_group",
    "update_group",
    "delete_group",
    "list_users_in_group",
    "remove_user_from_group",
    "check_user_in_group",
    "add_user_to_group",
    "get_role",
    "list_roles",
    "create_role",
    "update_role",
    "delete_role",
    "get_domain_role",
    "list_domain_roles",
    "create_domain_role",
    "update_domain_role",
    "delete_domain_role",
    "get_implied_role",
    "list_implied_roles",
    "create_implied_role",
    "delete_implied_role",
    "list_role_inference_rules",
    "check_implied_role",
    "check_grant",
    "list_grants",
    "create_grant",
    "revoke_grant",
    "list_system_grants_for_user",
    "check_system_grant_for_user",
    "create_system_grant_for_user",
    "revoke_system_grant_for_user",
    "list_system_grants_for_group",
    "check_system_grant_for_group",
    "create_system_grant_for_group",
    "revoke_system_grant_for_group",
    "list_role_assignments",
    "list_role_assignments_for_tree",
    "get_region",
    "list_regions",
    "create_region",
    "update_region",
    "delete_region",
    "get_service",
    "list_services",
    "create_service",
    "update_service",
    "delete_service",
    "get_endpoint",
    "list_endpoints",
    "create_endpoint",
    "update_endpoint",
    "delete_endpoint",
    "get_credential",
    "list_credentials",
    "create_credential",
    "update_credential",
    "delete_credential",
    "ec2_get_credential",
    "ec2_list_credentials",
    "ec2_create_credential",
    "ec2_delete_credential",
    "get_application_credential",
    "list_application_credentials",
    "create_application_credential",
    "delete_application_credential",
    "check_token",
    "validate_token",
    "revocation_list",
    "revoke_token",
    "get_auth_catalog",
    "get_auth_projects",
    "get_auth_domains",
    "get_auth_system",
]


def token(
    *names: str,
    user: str = "u1",
    project: str | None = None,
    domain: str | None = None,
    system: bool = False,
) -> dict[str, Any]:
    """Credentials as ``AuthContext.creds`` builds them, for one scope."""
    return {
        "roles": list(names),
        "user_id": user,
        "user_domain_id": "default",
        "project_id": project,
        "project_domain_id": "default" if project else None,
        "domain_id": domain,
        "system_scope": "all" if system else None,
    }


ADMIN = token("admin", "member", "reader", project="admin-project")
MEMBER = token("member", "reader", user="u2", project="p1")
READER = token("reader", user="u3", project="p1")
SYSTEM_READER = token("reader", user="u4", system=True)
DOMAIN_READER = token("reader", user="u5", domain="d1")
DOMAIN_MANAGER = token("manager", "member", "reader", user="u6", domain="d1")


def project(pid: str, domain: str | None = "default") -> dict[str, Any]:
    return {"target": {"project": {"id": pid, "domain_id": domain}}}


def user(uid: str, domain: str = "default") -> dict[str, Any]:
    return {"target": {"user": {"id": uid, "domain_id": domain}}}


def allowed(rule: str, creds: dict[str, Any], target: dict[str, Any] | None = None) -> bool:
    return POLICY.allowed(f"identity:{rule}", creds, target)


def test_defaults_cover_exactly_the_identity_operations() -> None:
    operations = {name.removeprefix("identity:") for name in DEFAULT_RULES if ":" in name}
    assert operations == set(OPERATIONS)
    for base in ("admin_required", "service_role", "service_or_admin", "owner", "admin_or_owner"):
        assert base in DEFAULT_RULES
    assert DEFAULT_RULES["owner"] == "user_id:%(user_id)s"


def test_project_scoped_admin_is_a_cloud_admin() -> None:
    assert allowed("create_project", ADMIN, project("new", "other-domain"))
    assert allowed("delete_project", ADMIN, project("p1"))
    assert allowed("create_user", ADMIN, user("new"))
    assert allowed("create_domain", ADMIN)
    assert allowed("create_role", ADMIN)
    assert allowed("create_endpoint", ADMIN)
    assert allowed("list_projects", ADMIN)
    assert allowed("get_project", ADMIN, project("p1"))
    assert allowed("create_system_grant_for_user", ADMIN)
    assert allowed("create_grant", ADMIN, {"target": {"project": {"id": "p1"}}})
    assert allowed("create_project", {"is_admin": True}, project("new"))
    assert not allowed("revocation_list", ADMIN)


def test_project_member_sees_only_its_own_project() -> None:
    assert allowed("get_project", MEMBER, project("p1"))
    assert allowed("list_project_tags", MEMBER, project("p1"))
    assert not allowed("get_project", MEMBER, project("p2"))
    assert not allowed("list_projects", MEMBER)
    assert not allowed("list_projects", MEMBER, {"domain_id": "default"})
    assert not allowed("create_user", MEMBER, user("new"))
    assert not allowed("create_project", MEMBER, project("new"))
    assert not allowed("update_project", MEMBER, project("p1"))
    assert not allowed("list_users", MEMBER)
    assert not allowed("get_user", MEMBER, user("u9"))
    assert allowed("get_user", MEMBER, user("u2"))
    # A project-scoped token has no domain scope: a null domain_id must not let it through.
    assert not allowed("get_project", MEMBER, project("p9", None))


def test_reader_may_read_but_not_write() -> None:
    assert allowed("get_project", READER, project("p1"))
    assert not allowed("update_project", READER, project("p1"))
    assert not allowed("create_project_tag", READER, project("p1"))
    assert allowed("get_domain", READER, {"target": {"domain": {"id": "default"}}})
    assert not allowed("get_domain", READER, {"target": {"domain": {"id": "d2"}}})


def test_system_reader_reads_everything_and_writes_nothing() -> None:
    assert allowed("list_users", SYSTEM_READER)
    assert allowed("list_projects", SYSTEM_READER)
    assert allowed("get_project", SYSTEM_READER, project("p1"))
    assert allowed("list_endpoints", SYSTEM_READER)
    assert allowed("list_role_assignments", SYSTEM_READER)
    assert not allowed("create_user", SYSTEM_READER, user("new"))
    assert not allowed("update_project", SYSTEM_READER, project("p1"))
    assert not allowed("create_grant", SYSTEM_READER, project("p1"))


def test_domain_scoped_reader_and_manager_stay_in_their_domain() -> None:
    assert allowed("list_projects", DOMAIN_READER, {"domain_id": "d1"})
    assert allowed("list_users", DOMAIN_READER, {"target": {"domain_id": "d1"}})
    assert not allowed("list_projects", DOMAIN_READER, {"domain_id": "d2"})
    assert not allowed("list_projects", DOMAIN_READER)
    assert allowed("get_project", DOMAIN_READER, project("p7", "d1"))
    assert not allowed("get_project", DOMAIN_READER, project("p7", "d2"))
    assert not allowed("create_project", DOMAIN_READER, project("new", "d1"))
    assert allowed("create_project", DOMAIN_MANAGER, project("new", "d1"))
    assert not allowed("create_project", DOMAIN_MANAGER, project("new", "d2"))
    assert allowed("create_user", DOMAIN_MANAGER, user("new", "d1"))
    assert not allowed("create_user", DOMAIN_MANAGER, user("new", "d2"))


def test_domain_manager_grants_only_managed_roles_inside_its_domain() -> None:
    def grant(role: str, user_domain: str = "d1", role_domain: str | None = None) -> dict[str, Any]:
        return {
            "target": {
                "project": {"id": "p7", "domain_id": "d1"},
                "user": {"id": "u9", "domain_id": user_domain},
                "role": {"id": f"r-{role}", "name": role, "domain_id": role_domain},
            }
        }

    assert allowed("create_grant", DOMAIN_MANAGER, grant("member"))
    assert not allowed("create_grant", DOMAIN_MANAGER, grant("admin"))
    assert not allowed("create_grant", DOMAIN_MANAGER, grant("member", user_domain="d2"))
    assert allowed("check_grant", DOMAIN_READER, grant("admin"))
    assert allowed("check_grant", DOMAIN_READER, grant("custom", role_domain="d1"))
    assert not allowed("check_grant", DOMAIN_READER, grant("custom", role_domain="d2"))
    assert not allowed("create_grant", MEMBER, grant("member"))


def test_user_owned_resources() -> None:
    assert allowed("create_application_credential", MEMBER, {"user_id": "u2"})
    assert not allowed("create_application_credential", MEMBER, {"user_id": "u3"})
    assert not allowed("create_application_credential", ADMIN, {"user_id": "u3"})
    assert allowed("delete_application_credential", ADMIN, {"user_id": "u3"})
    assert allowed("ec2_create_credential", MEMBER, {"user_id": "u2"})
    assert not allowed("ec2_create_credential", READER, {"user_id": "u3"})
    assert allowed("change_password", MEMBER, {"user_id": "u2"})
    assert not allowed("change_password", ADMIN, {"user_id": "u2"})
    own = {"target": {"credential": {"user_id": "u2"}}}
    assert allowed("get_credential", MEMBER, own)
    assert not allowed("get_credential", READER, own)
    assert allowed("list_user_projects", MEMBER, {"user_id": "u2"})
    assert not allowed("list_user_projects", MEMBER, {"user_id": "u3"})
    # The same keys nested under ``target``, as a caller wrapping its whole target passes them.
    assert allowed("create_application_credential", MEMBER, {"target": {"user_id": "u2"}})
    assert not allowed("create_application_credential", MEMBER, {"target": {"user_id": "u3"}})
    assert allowed("get_application_credential", MEMBER, {"target": {"user_id": "u2"}})
    assert not allowed("get_application_credential", READER, {"target": {"user_id": "u2"}})


def test_tokens_and_anonymous_operations() -> None:
    subject = {"target": {"token": {"user_id": "u2"}}}
    assert allowed("check_token", MEMBER, subject)
    assert allowed("revoke_token", MEMBER, subject)
    assert not allowed("check_token", READER, subject)
    assert allowed("validate_token", token("service", user="nova", project="service"), subject)
    assert allowed("get_region", {})
    assert allowed("get_auth_projects", {})
    assert not allowed("revocation_list", SYSTEM_READER)
