"""Nova's default policy (secure RBAC) for the flavor and keypair operations.

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
}
