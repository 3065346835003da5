"""SQL of the image service: ``img_images`` and ``img_members`` (migration ``0003_image.sql``).

An image is a plain dict: the row's columns, ``properties`` decoded to a dict of strings and
``tags`` a list. A deleted image keeps its row (``status = 'deleted'``, ``deleted_at`` set) so that
its id is never reused, as in Glance; every read here skips deleted rows unless told otherwise.
Writers call these functions on ``uow.conn`` inside one unit of work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from cloud.api.listing import Where
from cloud.store.conn import DbConnection

Image = dict[str, Any]

# Columns ``update`` may set (names are interpolated into SQL, so only these).
COLUMNS = frozenset(
    {
        "name",
        "owner",
        "status",
        "visibility",
        "protected",
        "os_hidden",
        "container_format",
        "disk_format",
        "min_disk",
        "min_ram",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "tags",
        "properties",
        "location",
        "staged",
        "upload_attempt",
        "updated_at",
        "deleted_at",
    }
)


def to_image(record: asyncpg.Record | Mapping[str, Any]) -> Image:
    image = dict(record)
    props = image.get("properties")
    image["properties"] = json.loads(props) if isinstance(props, str) else dict(props or {})
    image["tags"] = list(image.get("tags") or [])
    return image


async def get(conn: DbConnection, image_id: str, *, for_update: bool = False) -> Image | None:
    """The image (not deleted), or None; ``for_update`` locks its row until commit."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT * FROM img_images WHERE id = $1 AND deleted_at IS NULL{lock}", image_id
    )
    return None if row is None else to_image(row)


async def insert(conn: DbConnection, values: Mapping[str, Any]) -> Image | None:
    """Insert a new image row; None if the id was ever used (deleted images keep theirs)."""
    fields = dict(values)
    fields["properties"] = json.dumps(fields.get("properties", {}))
    names = list(fields)
    params = ", ".join(
        f"${i}::jsonb" if n == "properties" else f"${i}" for i, n in enumerate(names, 1)
    )
    try:
        row = await conn.fetchrow(
            f"INSERT INTO img_images ({', '.join(names)}) VALUES ({params}) RETURNING *",
            *fields.values(),
        )
    except asyncpg.UniqueViolationError:
        return None
    assert row is not None
    return to_image(row)


async def update(conn: DbConnection, image_id: str, values: Mapping[str, Any]) -> Image:
    """Set ``values`` (columns of :data:`COLUMNS`) on a live image; the new row."""
    unknown = set(values) - COLUMNS
    if unknown:
        raise ValueError(f"not updatable image columns: {sorted(unknown)}")
    sets, args = [], [image_id]
    for name, value in values.items():
        args.append(json.dumps(value) if name == "properties" else value)
        sets.append(f"{name} = ${len(args)}{'::jsonb' if name == 'properties' else ''}")
    row = await conn.fetchrow(
        f"UPDATE img_images SET {', '.join(sets)} WHERE id = $1 AND deleted_at IS NULL RETURNING *",
        *args,
    )
    if row is None:
        raise LookupError(f"image {image_id} is gone")
    return to_image(row)


async def mark_deleted(conn: DbConnection, image_id: str, now: datetime) -> Image | None:
    """Delete an image (its row stays, as ``deleted``) and its memberships; the row before."""
    before = await get(conn, image_id, for_update=True)
    if before is None:
        return None
    # Bumping the attempt makes an upload still running for this image lose when it finishes.
    await conn.execute(
        """UPDATE img_images SET status = 'deleted', deleted_at = $2, updated_at = $2,
                                 upload_attempt = upload_attempt + 1
           WHERE id = $1""",
        image_id,
        now,
    )
    await conn.execute("DELETE FROM img_members WHERE image_id = $1", image_id)
    return before


async def list_page(conn: DbConnection, where: Where, order: str, limit: int) -> list[Image]:
    """Images matching ``where`` (on alias ``i``), in ``order``, at most ``limit``."""
    rows = await conn.fetch(
        f"SELECT i.* FROM img_images i {where.sql()} {order} LIMIT {int(limit)}", *where.args
    )
    return [to_image(r) for r in rows]


# -- usage (quotas) ---------------------------------------------------------------------------


async def image_count(conn: DbConnection, owner: str) -> int:
    """Images a project owns that count against its quota (not killed nor deleted)."""
    count = await conn.fetchval(
        """SELECT count(*) FROM img_images
           WHERE owner = $1 AND deleted_at IS NULL
             AND status NOT IN ('killed', 'deleted', 'pending_delete')""",
        owner,
    )
    return int(count or 0)


async def used_bytes(conn: DbConnection, owner: str, *, exclude: str | None = None) -> int:
    """Bytes of image data a project owns (``exclude``: an image whose data is being replaced)."""
    total = await conn.fetchval(
        """SELECT COALESCE(sum(size), 0) FROM img_images
           WHERE owner = $1 AND deleted_at IS NULL AND size > 0
             AND status NOT IN ('killed', 'deleted', 'pending_delete')
             AND ($2::text IS NULL OR id <> $2)""",
        owner,
        exclude,
    )
    return int(total or 0)


# -- members ----------------------------------------------------------------------------------


async def member(conn: DbConnection, image_id: str, member_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM img_members WHERE image_id = $1 AND member_id = $2", image_id, member_id
    )
    return None if row is None else dict(row)


async def members(
    conn: DbConnection, image_id: str, *, only: str | None = None
) -> list[dict[str, Any]]:
    """The image's members in creation order; ``only``: just that project's membership."""
    rows = await conn.fetch(
        """SELECT * FROM img_members WHERE image_id = $1 AND ($2::text IS NULL OR member_id = $2)
           ORDER BY created_at, member_id""",
        image_id,
        only,
    )
    return [dict(r) for r in rows]


async def count_members(conn: DbConnection, image_id: str) -> int:
    count = await conn.fetchval("SELECT count(*) FROM img_members WHERE image_id = $1", image_id)
    return int(count or 0)


async def add_member(
    conn: DbConnection, image_id: str, member_id: str, now: datetime
) -> dict[str, Any] | None:
    """A new ``pending`` membership; None if the project already is a member."""
    row = await conn.fetchrow(
        """INSERT INTO img_members (image_id, member_id, status, created_at, updated_at)
           VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT DO NOTHING RETURNING *""",
        image_id,
        member_id,
        now,
    )
    return None if row is None else dict(row)


async def set_member_status(
    conn: DbConnection, image_id: str, member_id: str, status: str, now: datetime
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """UPDATE img_members SET status = $3, updated_at = $4
           WHERE image_id = $1 AND member_id = $2 RETURNING *""",
        image_id,
        member_id,
        status,
        now,
    )
    return None if row is None else dict(row)


async def remove_member(conn: DbConnection, image_id: str, member_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM img_members WHERE image_id = $1 AND member_id = $2 RETURNING 1",
        image_id,
        member_id,
    )
    return deleted is not None
