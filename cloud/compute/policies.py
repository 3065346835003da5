"""Nova's default policy (secure RBAC) for the flavor, keypair and admin (placement) operations.

Rule names are Nova's own, so a Nova policy file's rules for them apply unchanged
(``AIOSTACK_POLICY_FILE``; only the rules named here are read from it). Flavor listing and
showing have no rule in Nova: every authenticated caller may (private flavors are filtered).

Targets: ``project_id`` (the caller's project, or the flavor access target) and, for keypairs,
``user_id`` (the keypair's owner).
"""

from __future__ import annotations

ADMIN = "rule:context_is_admin"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
PROJECT_READER_OR_ADMIN = f"{ADMIN} or ({PROJECT_READER})"
ADMIN_OR_OWNER = f"{ADMIN} or user_id:%(user_id)s"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_MEMBER_OR_ADMIN = f"{ADMIN} or ({PROJECT_MEMBER})"
ANYONE = "@"

FLAVOR_CREATE = "os_compute_api:os-flavor-manage:create"
FLAVOR_UPDATE = "os_compute_api:os-flavor-manage:update"
FLAVOR_DELETE = "os_compute_api:os-flavor-manage:delete"
ACCESS_LIST = "os_compute_api:os-flavor-access"
ACCESS_ADD = "os_compute_api:os-flavor-access:add_tenant_access"
ACCESS_REMOVE = "os_compute_api:os-flavor-access:remove_tenant_access"
SPECS_INDEX = "os_compute_api:os-flavor-extra-specs:index"
SPECS_SHOW = "os_compute_api:os-flavor-extra-specs:show"
SPECS_CREATE = "os_compute_api:os-flavor-extra-specs:create"
SPECS_UPDATE = "os_compute_api:os-flavor-extra-specs:update"
SPECS_DELETE = "os_compute_api:os-flavor-extra-specs:delete"
KEYPAIR_INDEX = "os_compute_api:os-keypairs:index"
KEYPAIR_SHOW = "os_compute_api:os-keypairs:show"
KEYPAIR_CREATE = "os_compute_api:os-keypairs:create"
KEYPAIR_DELETE = "os_compute_api:os-keypairs:delete"
SERVICES_LIST = "os_compute_api:os-services:list"
SERVICES_UPDATE = "os_compute_api:os-services:update"
SERVICES_DELETE = "os_compute_api:os-services:delete"
HYPERVISORS_LIST = "os_compute_api:os-hypervisors:list"
HYPERVISORS_DETAIL = "os_compute_api:os-hypervisors:list-detail"
HYPERVISORS_STATISTICS = "os_compute_api:os-hypervisors:statistics"
HYPERVISORS_SHOW = "os_compute_api:os-hypervisors:show"
HYPERVISORS_UPTIME = "os_compute_api:os-hypervisors:uptime"
AZ_LIST = "os_compute_api:os-availability-zone:list"
AZ_DETAIL = "os_compute_api:os-availability-zone:detail"
AGGREGATES_INDEX = "os_compute_api:os-aggregates:index"
AGGREGATES_CREATE = "os_compute_api:os-aggregates:create"
AGGREGATES_SHOW = "os_compute_api:os-aggregates:show"
AGGREGATES_UPDATE = "os_compute_api:os-aggregates:update"
AGGREGATES_DELETE = "os_compute_api:os-aggregates:delete"
AGGREGATES_ADD_HOST = "os_compute_api:os-aggregates:add_host"
AGGREGATES_REMOVE_HOST = "os_compute_api:os-aggregates:remove_host"
AGGREGATES_SET_METADATA = "os_compute_api:os-aggregates:set_metadata"
GROUPS_CREATE = "os_compute_api:os-server-groups:create"
GROUPS_DELETE = "os_compute_api:os-server-groups:delete"
GROUPS_INDEX = "os_compute_api:os-server-groups:index"
GROUPS_INDEX_ALL = "os_compute_api:os-server-groups:index:all_projects"
GROUPS_SHOW = "os_compute_api:os-server-groups:show"
QUOTAS_SHOW = "os_compute_api:os-quota-sets:show"
QUOTAS_UPDATE = "os_compute_api:os-quota-sets:update"
QUOTAS_DEFAULTS = "os_compute_api:os-quota-sets:defaults"
QUOTAS_DELETE = "os_compute_api:os-quota-sets:delete"
QUOTAS_DETAIL = "os_compute_api:os-quota-sets:detail"
QUOTA_CLASS_SHOW = "os_compute_api:os-quota-class-sets:show"
QUOTA_CLASS_UPDATE = "os_compute_api:os-quota-class-sets:update"
LIMITS = "os_compute_api:limits"
LIMITS_OTHER_PROJECT = "os_compute_api:limits:other_project"
USAGE_LIST = "os_compute_api:os-simple-tenant-usage:list"
USAGE_SHOW = "os_compute_api:os-simple-tenant-usage:show"

DEFAULT_RULES: dict[str, str] = {
    "context_is_admin": "role:admin",
    "admin_api": "role:admin",
    FLAVOR_CREATE: ADMIN,
    FLAVOR_UPDATE: ADMIN,
    FLAVOR_DELETE: ADMIN,
    ACCESS_LIST: ADMIN,
    ACCESS_ADD: ADMIN,
    ACCESS_REMOVE: ADMIN,
    SPECS_INDEX: PROJECT_READER_OR_ADMIN,
    SPECS_SHOW: PROJECT_READER_OR_ADMIN,
    SPECS_CREATE: ADMIN,
    SPECS_UPDATE: ADMIN,
    SPECS_DELETE: ADMIN,
    KEYPAIR_INDEX: ADMIN_OR_OWNER,
    KEYPAIR_SHOW: ADMIN_OR_OWNER,
    KEYPAIR_CREATE: ADMIN_OR_OWNER,
    KEYPAIR_DELETE: ADMIN_OR_OWNER,
    SERVICES_LIST: ADMIN,
    SERVICES_UPDATE: ADMIN,
    SERVICES_DELETE: ADMIN,
    HYPERVISORS_LIST: ADMIN,
    HYPERVISORS_DETAIL: ADMIN,
    HYPERVISORS_STATISTICS: ADMIN,
    HYPERVISORS_SHOW: ADMIN,
    HYPERVISORS_UPTIME: ADMIN,
    AZ_LIST: ANYONE,
    AZ_DETAIL: ADMIN,
    AGGREGATES_INDEX: ADMIN,
    AGGREGATES_CREATE: ADMIN,
    AGGREGATES_SHOW: ADMIN,
    AGGREGATES_UPDATE: ADMIN,
    AGGREGATES_DELETE: ADMIN,
    AGGREGATES_ADD_HOST: ADMIN,
    AGGREGATES_REMOVE_HOST: ADMIN,
    AGGREGATES_SET_METADATA: ADMIN,
    GROUPS_CREATE: PROJECT_MEMBER,
    GROUPS_DELETE: PROJECT_MEMBER_OR_ADMIN,
    GROUPS_INDEX: PROJECT_READER_OR_ADMIN,
    GROUPS_INDEX_ALL: ADMIN,
    GROUPS_SHOW: PROJECT_READER_OR_ADMIN,
    QUOTAS_SHOW: PROJECT_READER_OR_ADMIN,
    QUOTAS_UPDATE: ADMIN,
    QUOTAS_DEFAULTS: ANYONE,
    QUOTAS_DELETE: ADMIN,
    QUOTAS_DETAIL: PROJECT_READER_OR_ADMIN,
    QUOTA_CLASS_SHOW: ADMIN,
    QUOTA_CLASS_UPDATE: ADMIN,
    LIMITS: ANYONE,
    LIMITS_OTHER_PROJECT: ADMIN,
    USAGE_LIST: ADMIN,
    USAGE_SHOW: PROJECT_READER_OR_ADMIN,
}
