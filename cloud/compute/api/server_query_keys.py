"""Nova's vocabulary for server lists: the filters each caller may use at each microversion, and
the sort keys (``nova/api/openstack/compute/schemas/servers.py`` and ``servers.py``).
"""

from __future__ import annotations

Version = tuple[int, int]

# Every server status Nova reports (a status filter outside them is invalid from 2.38).
STATUSES = frozenset(
    [
        "ACTIVE",
        "BUILD",
        "DELETED",
        "ERROR",
        "HARD_REBOOT",
        "MIGRATING",
        "PASSWORD",
        "PAUSED",
        "REBOOT",
        "REBUILD",
        "RESCUE",
        "RESIZE",
        "REVERT_RESIZE",
        "SHELVED",
        "SHELVED_OFFLOADED",
        "SHUTOFF",
        "SOFT_DELETED",
        "SUSPENDED",
        "UNKNOWN",
        "VERIFY_RESIZE",
    ]
)
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")

# Nova's query_params_v21 (schemas/servers.py); later versions add the tuples below.
KNOWN = (
    frozenset(
        [
            "user_id",
            "project_id",
            "tenant_id",
            "launch_index",
            "image_ref",
            "image",
            "kernel_id",
            "ramdisk_id",
            "hostname",
            "key_name",
            "power_state",
            "vm_state",
            "task_state",
            "host",
            "node",
            "flavor",
            "reservation_id",
            "launched_at",
            "terminated_at",
            "availability_zone",
            "name",
            "display_name",
            "description",
            "created_at",
            "updated_at",
            "deleted",
            "uuid",
            "root_device_name",
            "config_drive",
            "access_ip_v4",
            "access_ip_v6",
            "auto_disk_config",
            "progress",
            "sort_key",
            "sort_dir",
            "all_tenants",
            "soft_deleted",
            "ip",
            "ip6",
            "status",
            "changes-since",
            "limit",
            "marker",
        ]
    )
    | frozenset(TAG_FILTERS)
    | {"changes-before", "locked"}
)

# What Nova lets a non-admin filter by (``_get_server_search_options``), by microversion.
USER_OPTIONS: tuple[tuple[Version, tuple[str, ...]], ...] = (
    ((2, 1), ("reservation_id", "name", "status", "image", "flavor", "ip", "changes-since")),
    ((2, 5), ("ip6",)),
    ((2, 26), TAG_FILTERS),
    ((2, 66), ("changes-before",)),
    ((2, 73), ("locked",)),
    (
        (2, 83),
        (
            "availability_zone",
            "config_drive",
            "key_name",
            "created_at",
            "launched_at",
            "terminated_at",
            "power_state",
            "task_state",
            "vm_state",
            "progress",
            "user_id",
        ),
    ),
    ((2, 90), ("hostname",)),
)
# Filters that exist only from a microversion on (ignored below it, for admins too).
SINCE: dict[str, Version] = {
    "tags": (2, 26),
    "tags-any": (2, 26),
    "not-tags": (2, 26),
    "not-tags-any": (2, 26),
    "changes-before": (2, 66),
    "locked": (2, 73),
}
# Exact-match filters: query parameter -> column.
EXACT = {
    "reservation_id": "reservation_id",
    "flavor": "flavor_id",
    "key_name": "key_name",
    "availability_zone": "availability_zone",
    "user_id": "user_id",
    "hostname": "hostname",
    "host": "host",
    "node": "host",
    "uuid": "id",
    "vm_state": "vm_state",
    "task_state": "task_state",
}
INT = {"launch_index": "launch_index", "power_state": "power_state"}

# Nova's VALID_SORT_KEYS -> a sort expression of ``{t}`` (NULLs folded, so comparisons are total),
# or None for the keys every server here shares a value of (sorting by them changes nothing).
SORT: dict[str, str | None] = {
    "access_ip_v4": None,
    "access_ip_v6": None,
    "auto_disk_config": None,
    "availability_zone": "COALESCE({t}.availability_zone, '')",
    "config_drive": None,
    "created_at": "{t}.created_at",
    "display_description": "COALESCE({t}.description, '')",
    "display_name": "{t}.name",
    "host": "COALESCE({t}.host, '')",
    "hostname": "COALESCE({t}.hostname, '')",
    "image_ref": "{t}.image_ref",
    "instance_type_id": "{t}.flavor_id",
    "kernel_id": None,
    "key_name": "COALESCE({t}.key_name, '')",
    "launch_index": "{t}.launch_index",
    "launched_at": "COALESCE({t}.launched_at, '-infinity')",
    "locked_by": "COALESCE({t}.locked_by, '')",
    "node": "COALESCE({t}.host, '')",
    "power_state": "{t}.power_state",
    "progress": None,
    "project_id": "{t}.project_id",
    "ramdisk_id": None,
    "root_device_name": None,
    "task_state": "COALESCE({t}.task_state, '')",
    "terminated_at": "COALESCE({t}.terminated_at, '-infinity')",
    "updated_at": "{t}.updated_at",
    "user_id": "{t}.user_id",
    "uuid": "{t}.id",
    "vm_state": "{t}.vm_state",
}
# Valid keys Nova ignores (SERVER_LIST_IGNORE_SORT_KEY); ``locked`` sorts from 2.73.
IGNORED_SORT = frozenset(
    [
        "architecture",
        "cell_name",
        "cleaned",
        "default_ephemeral_device",
        "default_swap_device",
        "deleted",
        "deleted_at",
        "disable_terminate",
        "ephemeral_gb",
        "ephemeral_key_uuid",
        "id",
        "key_data",
        "launched_on",
        "locked",
        "memory_mb",
        "os_type",
        "reservation_id",
        "root_gb",
        "shutdown_terminate",
        "user_data",
        "vcpus",
        "vm_mode",
    ]
)
ADMIN_SORT = frozenset({"host", "node"})
