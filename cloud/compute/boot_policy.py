"""What a boot request must pass before its instances are written: quotas and server groups.

The servers API calls :func:`admit` inside the boot transaction (before inserting rows) and
:func:`admitted` after inserting them, in the same transaction, so a quota check and the rows it
counts commit together. :func:`server_groups_of` feeds the ``server_groups`` field of a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloud.store.conn import DbConnection
from schemas.compute import FlavorSpec


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
    return max_count


async def admitted(
    conn: DbConnection, *, project_id: str, instance_ids: list[str], hints: Mapping[str, Any]
) -> None:
    """Record what the boot joined (e.g. server group membership); same transaction as the rows."""


async def server_groups_of(conn: DbConnection, instance_id: str) -> list[str]:
    """Ids of the server groups the instance belongs to (Nova shows at most one)."""
    return []
