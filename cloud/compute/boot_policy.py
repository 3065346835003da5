"""What a boot request must pass before its instances are written: quotas and server groups.

The servers API calls :func:`admit` inside the boot transaction (before inserting rows) and
:func:`admitted` after inserting them, in the same transaction, so a quota check and the rows it
counts commit together. :func:`admit` holds the project's quota lock until that transaction ends,
so concurrent boots of one project are counted one after the other and never pass the limit
together. :func:`server_groups_of` feeds the ``server_groups`` field of a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cloud.api.errors import ApiError
from cloud.compute import quotas
from cloud.store.conn import DbConnection
from schemas.compute import FlavorSpec


def _group_hint(hints: Mapping[str, Any]) -> str | None:
    value = hints.get("group")
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) else _bad_group(value)
    except ValueError:
        return _bad_group(value)


def _bad_group(value: Any) -> str:
    raise ApiError(
        400, f"Invalid input for field/attribute group. Value: {value}. '{value}' is not a 'uuid'"
    )


def too_many_instances(
    overs: list[str],
    requested: Mapping[str, Any],
    used: Mapping[str, int],
    limits: Mapping[str, int],
) -> ApiError:
    """Nova's TooManyInstances, as its API answers it (403)."""
    names = ", ".join(overs)
    return ApiError(
        403,
        f"Quota exceeded for {names}: Requested {', '.join(str(requested[o]) for o in overs)}, "
        f"but already used {', '.join(str(used[o]) for o in overs)} of "
        f"{', '.join(str(limits[o]) for o in overs)} {names}",
    )


def allowed_count(
    flavor: FlavorSpec,
    min_count: int,
    max_count: int,
    used: Mapping[str, int],
    limits: Mapping[str, int],
) -> int:
    """How many of ``min_count..max_count`` instances fit the quotas (Nova's arithmetic)."""
    per_instance = {"instances": 1, "cores": flavor.vcpus, "ram": flavor.ram_mb}
    allowed = max_count
    overs = []
    for resource, delta in per_instance.items():
        limit = limits[resource]
        if limit < 0 or delta == 0:
            continue
        headroom = max(0, limit - used[resource])
        if headroom < delta * max_count:
            overs.append(resource)
            allowed = min(allowed, headroom // delta)
    if allowed >= min_count and allowed > 0:
        return allowed
    count = str(min_count) if min_count == max_count else f"{min_count}-{max_count}"
    requested = {
        "instances": count,
        "cores": flavor.vcpus * max_count,
        "ram": flavor.ram_mb * max_count,
    }
    raise too_many_instances(sorted(overs), requested, used, limits)


async def admit(
    conn: DbConnection,
    *,
    project_id: str,
    user_id: str,
    flavor: FlavorSpec,
    min_count: int,
    max_count: int,
    metadata_items: int,
    hints: Mapping[str, Any],
) -> int:
    """How many instances (between ``min_count`` and ``max_count``) this boot may create.

    Raises ``ApiError`` (403 over quota, 400 a bad server group hint) when not even ``min_count``
    may be created.
    """
    group_id = _group_hint(hints)
    await quotas.lock_project(conn, project_id)
    limits = await quotas.limits_of(conn, project_id)
    if 0 <= limits["metadata_items"] < metadata_items:
        raise ApiError(403, f"Maximum number of metadata items exceeds {limits['metadata_items']}")
    used = await quotas.usage_of(conn, project_id)
    allowed = allowed_count(flavor, min_count, max_count, used, limits)
    if group_id is not None:
        group = await conn.fetchval(
            "SELECT project_id FROM cmp_server_groups WHERE id = $1 FOR SHARE", group_id
        )
        if group is None or group != project_id:
            raise ApiError(400, f"Instance group {group_id} could not be found.")
        members = await conn.fetchval(
            """SELECT count(*) FROM cmp_server_group_members m
               JOIN cmp_instances i ON i.id = m.instance_id
               WHERE m.group_id = $1 AND i.deleted_at IS NULL""",
            group_id,
        )
        limit = limits["server_group_members"]
        if limit >= 0 and members + allowed > limit:
            raise ApiError(403, "Quota exceeded, too many servers in group")
    return allowed


async def admitted(
    conn: DbConnection, *, project_id: str, instance_ids: list[str], hints: Mapping[str, Any]
) -> None:
    """Record what the boot joined (e.g. server group membership); same transaction as the rows."""
    group_id = _group_hint(hints)
    if group_id is None or not instance_ids:
        return
    await conn.execute(
        """INSERT INTO cmp_server_group_members (group_id, instance_id)
           SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING""",
        group_id,
        instance_ids,
    )


async def server_groups_of(conn: DbConnection, instance_id: str) -> list[str]:
    """Ids of the server groups the instance belongs to (Nova shows at most one)."""
    rows = await conn.fetch(
        "SELECT group_id FROM cmp_server_group_members WHERE instance_id = $1 ORDER BY group_id",
        instance_id,
    )
    return [r["group_id"] for r in rows]
