"""Keystone's default identity policy (secure RBAC), for :class:`cloud.api.policy.Policy`.

Roles are ``admin`` > ``member`` > ``reader`` (plus ``manager``, a domain manager, and
``service``); ``creds["roles"]`` holds the effective names, implied roles included. As in
Keystone, ``admin`` in *any* scope is a cloud administrator (``admin_required``): the bootstrap
admin authenticates project-scoped and ``openstack project create`` must work. Otherwise a
reader may read and only admins (or a domain manager, inside its domain) may write. A project
member sees its own project, never another one, and never the whole list.

Credentials (see ``cloud.api.context.AuthContext.creds``): ``roles``, ``user_id``,
``user_domain_id``, ``project_id``, ``project_domain_id``, ``domain_id`` (set only when the token
is domain-scoped), ``system_scope`` (``"all"`` or None), ``is_admin`` (optional bool).

Targets the API passes (nested dicts or dotted keys; an absent key makes its check false):

- A resource is ``target.<kind>``: ``target.project`` (``id``, ``domain_id``), ``target.domain``
  (``id``), ``target.user`` (``id``, ``domain_id``), ``target.group`` (``id``, ``domain_id``),
  ``target.role`` (``id``, ``name``, ``domain_id``; null for a global role),
  ``target.credential`` (``user_id``), ``target.application_credential`` (``user_id``). For a
  create it is the new resource as requested, for an update the stored one.
- ``list_credentials``: the API checks each credential (``target.credential``) and drops those
  denied, as Keystone does.
- Grants (``*_grant``, ``list_grants``): ``target.project`` or ``target.domain`` (with the
  project's ``domain_id``), ``target.user`` or ``target.group`` (with ``domain_id``), and
  ``target.role`` (with ``name`` and ``domain_id``; not for ``list_grants``). System grants:
  ``target.user`` or ``target.group`` and ``target.role``.
- ``list_groups_for_user``: ``target.user``. ``list_users_in_group`` and
  ``check_user_in_group``: ``target.group`` (and ``target.user`` for the check).
- Collection lists (``list_projects``, ``list_users``, ``list_groups``, ``list_domains``,
  ``list_role_assignments*``): ``domain_id``, the domain the listing is restricted to: the
  ``domain_id`` query filter, or for a domain-scoped caller its own domain (the API then returns
  only that domain's entries).
- User-owned collections (``ec2_*``, ``*application_credential*``, ``change_password``,
  ``list_user_projects``): ``user_id``, the user in the URL; the API answers 404 when the
  addressed credential belongs to someone else. ``list_user_projects`` also takes
  ``target.user`` so that a domain reader may list a user of its domain.
- Tokens (``check_token``, ``validate_token``, ``revoke_token``): ``target.token.user_id``, the
  subject token's user.

The list and user-owned keys are read at the top level (``%(domain_id)s``, ``%(user_id)s``, where
oslo.policy puts Keystone's URL arguments) or under ``target`` (``target.domain_id``,
``target.user_id``: Keystone's own spelling for lists, and what a caller nesting its whole target
under ``target`` produces). Either works; an absent one never grants anything.
"""

from __future__ import annotations

# Building blocks, spelled out like Keystone's ``keystone/common/policies`` constants.
_ADMIN_OR_READER = "rule:admin_or_system_reader"
_PROJECT_READER = (
    f"{_ADMIN_OR_READER} or (role:reader and domain_id:%(target.project.domain_id)s)"
    " or project_id:%(target.project.id)s"
)
_PROJECT_MANAGER = (
    "rule:admin_required or (role:manager and domain_id:%(target.project.domain_id)s)"
)
_USER_READER = (
    f"{_ADMIN_OR_READER} or (role:reader and domain_id:%(target.user.domain_id)s)"
    " or user_id:%(target.user.id)s"
)
_USER_MANAGER = "rule:admin_required or (role:manager and domain_id:%(target.user.domain_id)s)"
_GROUP_READER = f"{_ADMIN_OR_READER} or (role:reader and domain_id:%(target.group.domain_id)s)"
_GROUP_MANAGER = "rule:admin_required or (role:manager and domain_id:%(target.group.domain_id)s)"
_GROUP_MEMBERSHIP_IN_DOMAIN = (
    "domain_id:%(target.group.domain_id)s and domain_id:%(target.user.domain_id)s"
)
_LIST_IN_DOMAIN = f"{_ADMIN_OR_READER} or rule:domain_reader"
# A domain-scoped caller acts on a grant only when both the actor (user or group) and the
# target (project or domain) live in its domain.
_GRANT_IN_DOMAIN = (
    "(domain_id:%(target.user.domain_id)s or domain_id:%(target.group.domain_id)s)"
    " and (domain_id:%(target.project.domain_id)s or domain_id:%(target.domain.id)s)"
)
# ...and the role is global or one of that domain's own roles.
_GRANT_ROLE_IN_DOMAIN = "(domain_id:%(target.role.domain_id)s or None:%(target.role.domain_id)s)"
_GRANT_MANAGER = (
    "rule:admin_required or"
    f" (role:manager and {_GRANT_IN_DOMAIN} and rule:domain_managed_target_role)"
)
_CREDENTIAL_OWNER = "user_id:%(target.credential.user_id)s"
_OWNER = "(rule:owner or rule:target_owner)"

_BASE: dict[str, str] = {
    "admin_required": "role:admin or is_admin:True",
    "service_role": "role:service",
    "service_or_admin": "rule:admin_required or rule:service_role",
    "owner": "user_id:%(user_id)s",
    # ``owner`` with the user id passed under ``target`` (see the module docstring).
    "target_owner": "user_id:%(target.user_id)s",
    "admin_or_owner": "rule:admin_required or rule:owner or rule:target_owner",
    "token_subject": "user_id:%(target.token.user_id)s",
    "admin_or_token_subject": "rule:admin_required or rule:token_subject",
    "service_admin_or_token_subject": "rule:service_or_admin or rule:token_subject",
    "system_reader": "role:reader and system_scope:all",
    "system_admin": "role:admin and system_scope:all",
    "admin_or_system_reader": "rule:admin_required or rule:system_reader",
    "admin_or_system_reader_or_owner": (
        "rule:admin_or_system_reader or rule:owner or rule:target_owner"
    ),
    # A reader scoped to the domain a listing is restricted to (see the module docstring).
    "domain_reader": (
        "role:reader and (domain_id:%(domain_id)s or domain_id:%(target.domain_id)s)"
    ),
    # A manager on a domain-scoped token; ``not domain_id:None`` is "the token is domain-scoped".
    "domain_manager": "role:manager and not domain_id:None",
    # The roles a domain manager may look up and hand out: never admin or service.
    "domain_managed_target_role": (
        "'manager':%(target.role.name)s or 'member':%(target.role.name)s"
        " or 'reader':%(target.role.name)s"
    ),
}

_OPERATIONS: dict[str, str] = {
    # Domains: project users may see the domain their project lives in.
    "get_domain": (
        f"{_ADMIN_OR_READER} or domain_id:%(target.domain.id)s"
        " or project_domain_id:%(target.domain.id)s"
    ),
    "list_domains": _LIST_IN_DOMAIN,
    "create_domain": "rule:admin_required",
    "update_domain": "rule:admin_required",
    "delete_domain": "rule:admin_required",
    # Projects and their tags.
    "get_project": _PROJECT_READER,
    "list_projects": _LIST_IN_DOMAIN,
    "list_user_projects": (
        f"{_ADMIN_OR_READER} or (role:reader and domain_id:%(target.user.domain_id)s) or {_OWNER}"
    ),
    "create_project": _PROJECT_MANAGER,
    "update_project": _PROJECT_MANAGER,
    "delete_project": _PROJECT_MANAGER,
    "list_project_tags": _PROJECT_READER,
    "get_project_tag": _PROJECT_READER,
    "update_project_tags": _PROJECT_MANAGER,
    "create_project_tag": _PROJECT_MANAGER,
    "delete_project_tags": _PROJECT_MANAGER,
    "delete_project_tag": _PROJECT_MANAGER,
    # Users. Changing one's own password is for the user alone (it needs the old password).
    "get_user": _USER_READER,
    "list_users": _LIST_IN_DOMAIN,
    "create_user": _USER_MANAGER,
    "update_user": _USER_MANAGER,
    "delete_user": _USER_MANAGER,
    "change_password": _OWNER,
    # Groups and membership.
    "list_groups": _LIST_IN_DOMAIN,
    "list_groups_for_user": _USER_READER,
    "get_group": _GROUP_READER,
    "create_group": _GROUP_MANAGER,
    "update_group": _GROUP_MANAGER,
    "delete_group": _GROUP_MANAGER,
    "list_users_in_group": _GROUP_READER,
    "check_user_in_group": (
        f"{_ADMIN_OR_READER} or (role:reader and {_GROUP_MEMBERSHIP_IN_DOMAIN})"
    ),
    "add_user_to_group": (
        f"rule:admin_required or (role:manager and {_GROUP_MEMBERSHIP_IN_DOMAIN})"
    ),
    "remove_user_from_group": (
        f"rule:admin_required or (role:manager and {_GROUP_MEMBERSHIP_IN_DOMAIN})"
    ),
    # Roles: domain managers need to look roles up by name to assign them.
    "get_role": (
        f"{_ADMIN_OR_READER} or (rule:domain_manager and rule:domain_managed_target_role)"
    ),
    "list_roles": f"{_ADMIN_OR_READER} or rule:domain_manager",
    "create_role": "rule:admin_required",
    "update_role": "rule:admin_required",
    "delete_role": "rule:admin_required",
    "get_domain_role": _ADMIN_OR_READER,
    "list_domain_roles": _ADMIN_OR_READER,
    "create_domain_role": "rule:admin_required",
    "update_domain_role": "rule:admin_required",
    "delete_domain_role": "rule:admin_required",
    "get_implied_role": _ADMIN_OR_READER,
    "list_implied_roles": _ADMIN_OR_READER,
    "create_implied_role": "rule:admin_required",
    "delete_implied_role": "rule:admin_required",
    "list_role_inference_rules": _ADMIN_OR_READER,
    "check_implied_role": _ADMIN_OR_READER,
    # Grants on projects and domains, and on the system.
    "check_grant": (
        f"{_ADMIN_OR_READER} or (role:reader and {_GRANT_IN_DOMAIN} and {_GRANT_ROLE_IN_DOMAIN})"
    ),
    "list_grants": f"{_ADMIN_OR_READER} or (role:reader and {_GRANT_IN_DOMAIN})",
    "create_grant": _GRANT_MANAGER,
    "revoke_grant": _GRANT_MANAGER,
    "list_system_grants_for_user": _ADMIN_OR_READER,
    "check_system_grant_for_user": _ADMIN_OR_READER,
    "create_system_grant_for_user": "rule:admin_required",
    "revoke_system_grant_for_user": "rule:admin_required",
    "list_system_grants_for_group": _ADMIN_OR_READER,
    "check_system_grant_for_group": _ADMIN_OR_READER,
    "create_system_grant_for_group": "rule:admin_required",
    "revoke_system_grant_for_group": "rule:admin_required",
    "list_role_assignments": _LIST_IN_DOMAIN,
    "list_role_assignments_for_tree": _LIST_IN_DOMAIN,
    # The catalog: anyone with a token may see regions; services and endpoints are for readers.
    "get_region": "",
    "list_regions": "",
    "create_region": "rule:admin_required",
    "update_region": "rule:admin_required",
    "delete_region": "rule:admin_required",
    "get_service": _ADMIN_OR_READER,
    "list_services": _ADMIN_OR_READER,
    "create_service": "rule:admin_required",
    "update_service": "rule:admin_required",
    "delete_service": "rule:admin_required",
    "get_endpoint": _ADMIN_OR_READER,
    "list_endpoints": _ADMIN_OR_READER,
    "create_endpoint": "rule:admin_required",
    "update_endpoint": "rule:admin_required",
    "delete_endpoint": "rule:admin_required",
    # Credentials belong to a user; only admins act on other users' credentials.
    "get_credential": f"{_ADMIN_OR_READER} or {_CREDENTIAL_OWNER}",
    "list_credentials": f"{_ADMIN_OR_READER} or {_CREDENTIAL_OWNER}",
    "create_credential": f"rule:admin_required or {_CREDENTIAL_OWNER}",
    "update_credential": f"rule:admin_required or {_CREDENTIAL_OWNER}",
    "delete_credential": f"rule:admin_required or {_CREDENTIAL_OWNER}",
    "ec2_get_credential": "rule:admin_or_system_reader_or_owner",
    "ec2_list_credentials": "rule:admin_or_system_reader_or_owner",
    "ec2_create_credential": f"rule:admin_required or (role:member and {_OWNER})",
    "ec2_delete_credential": f"rule:admin_required or (role:member and {_OWNER})",
    "get_application_credential": "rule:admin_or_system_reader_or_owner",
    "list_application_credentials": "rule:admin_or_system_reader_or_owner",
    # Only the user may mint one: it carries the creator's own roles.
    "create_application_credential": _OWNER,
    "delete_application_credential": "rule:admin_or_owner",
    # Tokens: anyone may check or revoke their own; services validate others' tokens.
    "check_token": f"{_ADMIN_OR_READER} or rule:token_subject",
    "validate_token": f"{_ADMIN_OR_READER} or rule:service_role or rule:token_subject",
    "revocation_list": "!",  # the API is gone (410 in Keystone); nobody may call it
    "revoke_token": "rule:admin_or_token_subject",
    # What a token may be rescoped to: any authenticated user.
    "get_auth_catalog": "",
    "get_auth_projects": "",
    "get_auth_domains": "",
    "get_auth_system": "",
}

DEFAULT_RULES: dict[str, str] = {
    **_BASE,
    **{f"identity:{name}": check for name, check in _OPERATIONS.items()},
}
"""Rule name -> check string; the base rules plus one ``identity:<operation>`` rule each."""
