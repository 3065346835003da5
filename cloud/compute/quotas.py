"""Compute quotas: Nova's defaults, the default quota class, per-project limits, and usage.

A limit is the project's override (``cmp_quotas``), else the default class's
(``cmp_quota_classes``, ``os-quota-class-sets/default``), else Nova's default; ``-1`` is unlimited.
Usage is counted from the rows themselves (live instances, their flavor snapshots, server groups),
never kept as a counter that could drift. Checks that must not race take :func:`lock_project`
(a transaction-scoped advisory lock) before counting.
"""

from __future__ import annotations

from collections.abc import Mapping

from cloud.store.conn import DbConnection

# Nova's defaults, in the order its API lists them.
DEFAULTS: dict[str, int] = {
    "cores": 20,
    "fixed_ips": -1,
    "floating_ips": 10,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
    "injected_files": 5,
    "instances": 10,
    "key_pairs": 100,
    "metadata_items": 128,
    "ram": 51200,
    "security_group_rules": 20,
    "security_groups": 10,
    "server_group_members": 10,
    "server_groups": 10,
}
# Gone from the API at 2.36 (proxied network quotas) and 2.57 (personality files).
NETWORK_RESOURCES = ("fixed_ips", "floating_ips", "security_group_rules", "security_groups")
FILE_RESOURCES = ("injected_file_content_bytes", "injected_file_path_bytes", "injected_files")
DEFAULT_CLASS = "default"


def resources_at(ver: tuple[int, int]) -> list[str]:
    """The quota resources a microversion shows (and accepts in an update)."""
    names = list(DEFAULTS)
    if ver >= (2, 36):
        names = [n for n in names if n not in NETWORK_RESOURCES]
    if ver >= (2, 57):
        names = [n for n in names if n not in FILE_RESOURCES]
    return names


async def lock_project(conn: DbConnection, project_id: str) -> None:
    """Serialise quota checks of one project until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"cmp-quota:{project_id}"
    )


async def class_limits(conn: DbConnection, class_name: str = DEFAULT_CLASS) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT resource, hard_limit FROM cmp_quota_classes WHERE class_name = $1", class_name
    )
    return {**DEFAULTS, **{r["resource"]: r["hard_limit"] for r in rows}}


async def limits_of(conn: DbConnection, project_id: str) -> dict[str, int]:
    """Every resource's limit for the project."""
    rows = await conn.fetch(
        "SELECT resource, hard_limit FROM cmp_quotas WHERE project_id = $1", project_id
    )
    return {**await class_limits(conn), **{r["resource"]: r["hard_limit"] for r in rows}}


async def usage_of(
    conn: DbConnection, project_id: str, user_id: str | None = None
) -> dict[str, int]:
    """What the project uses now (key pairs: the user's, since that quota is per user)."""
    row = await conn.fetchrow(
        """SELECT count(*)::int AS instances,
                  coalesce(sum((flavor ->> 'vcpus')::int), 0)::int AS cores,
                  coalesce(sum((flavor ->> 'ram_mb')::int), 0)::int AS ram
           FROM cmp_instances WHERE project_id = $1 AND deleted_at IS NULL""",
        project_id,
    )
    groups = await conn.fetchval(
        "SELECT count(*)::int FROM cmp_server_groups WHERE project_id = $1", project_id
    )
    keypairs = 0
    if user_id is not None:
        keypairs = await conn.fetchval(
            "SELECT count(*)::int FROM cmp_keypairs WHERE user_id = $1", user_id
        )
    assert row is not None
    return {**dict(row), "server_groups": groups, "key_pairs": keypairs}


async def set_limits(
    conn: DbConnection, project_id: str, limits: Mapping[str, int], *, class_name: str | None = None
) -> None:
    """Store overrides for a project (or, with ``class_name``, for the quota class)."""
    for resource, limit in limits.items():
        if class_name is not None:
            await conn.execute(
                """INSERT INTO cmp_quota_classes (class_name, resource, hard_limit)
                   VALUES ($1, $2, $3) ON CONFLICT (class_name, resource)
                   DO UPDATE SET hard_limit = excluded.hard_limit""",
                class_name,
                resource,
                limit,
            )
            continue
        await conn.execute(
            """INSERT INTO cmp_quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
               ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit""",
            project_id,
            resource,
            limit,
        )


async def revert(conn: DbConnection, project_id: str) -> None:
    """Drop the project's overrides: it is back on the defaults."""
    await conn.execute("DELETE FROM cmp_quotas WHERE project_id = $1", project_id)
