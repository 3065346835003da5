"""The servers API's reads and writes of ``cmp_instances`` (each write with its event, one transaction)."""

from __future__ import annotations

import json
from typing import Any

from cloud.compute.api.server_query import ServerQuery, keyset, marker_values, order_by
from cloud.store.conn import DbConnection
from cloud.store.writes import UnitOfWork
from schemas.compute import FlavorSpec, InstanceDeleteRequested, InstanceRequested

_FIELDS = [
    "id",
    "name",
    "project_id",
    "user_id",
    "image_ref",
    "flavor_id",
    "flavor::text",
    "host",
    "vm_state",
    "task_state",
    "power_state",
    "status",
    "metadata::text",
    "tags",
    "key_name",
    "user_data",
    "availability_zone",
    "fault::text",
    "launched_at",
    "terminated_at",
    "created_at",
    "updated_at",
    "description",
    "locked_by",
    "locked_reason",
    "reservation_id",
    "launch_index",
    "hostname",
    "networks",
    "scheduler_hints::text",
]


def columns(alias: str = "") -> str:
    """The select list of a server row (json columns as text), qualified by ``alias``."""
    prefix = f"{alias}." if alias else ""
    out = []
    for item in _FIELDS:
        name, cast, _ = item.partition("::")
        out.append(f"{prefix}{name}::text AS {name}" if cast else f"{prefix}{name}")
    return ", ".join(out)


COLUMNS = columns()


def flavor_spec(row: Any) -> FlavorSpec:
    """A ``cmp_flavors`` row as the snapshot an instance keeps."""
    specs = row["extra_specs"]
    return FlavorSpec(
        id=row["id"],
        name=row["name"],
        vcpus=row["vcpus"],
        ram_mb=row["ram"],
        disk_gb=row["disk"],
        ephemeral_gb=row["ephemeral"],
        swap_mb=row["swap"],
        extra_specs=json.loads(specs) if isinstance(specs, str) else dict(specs or {}),
    )


async def find_flavor(conn: DbConnection, flavor_ref: str, project_id: str) -> FlavorSpec | None:
    row = await conn.fetchrow(
        """SELECT id, name, vcpus, ram, disk, ephemeral, swap, extra_specs::text AS extra_specs
           FROM cmp_flavors f
           WHERE (id = $1 OR name = $1) AND NOT disabled
             AND (is_public OR EXISTS (SELECT 1 FROM cmp_flavor_access a
                                       WHERE a.flavor_id = f.id AND a.project_id = $2))
           ORDER BY id = $1 DESC LIMIT 1""",
        flavor_ref,
        project_id,
    )
    return None if row is None else flavor_spec(row)


async def image_status(conn: DbConnection, image_id: str, project_id: str) -> str | None:
    """The image's status if ``project_id`` may boot from it, else None."""
    status = await conn.fetchval(
        """SELECT status FROM img_images i
           WHERE id = $1 AND status <> 'deleted'
             AND (visibility IN ('public', 'community') OR owner = $2
                  OR EXISTS (SELECT 1 FROM img_members m WHERE m.image_id = i.id
                             AND m.member_id = $2 AND m.status = 'accepted'))""",
        image_id,
        project_id,
    )
    return None if status is None else str(status)


async def by_idempotency_key(conn: DbConnection, project_id: str, key: str) -> Any:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM cmp_instances WHERE project_id = $1 AND idempotency_key = $2",
        project_id,
        key,
    )


async def insert(uow: UnitOfWork, values: dict[str, Any], flavor: FlavorSpec) -> Any:
    """Write the instance row (BUILD/scheduling) and ``InstanceRequested``; None on a key clash.

    ``values`` beyond the basics (description, tags, hints, reservation, ...) are optional.
    """
    row = await uow.conn.fetchrow(
        f"""INSERT INTO cmp_instances (id, name, project_id, user_id, image_ref, flavor_id, flavor,
                vm_state, task_state, power_state, status, metadata, key_name, user_data,
                availability_zone, idempotency_key, created_at, updated_at, description, tags,
                scheduler_hints, reservation_id, launch_index, hostname, networks)
            VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, 'building', 'scheduling', 0, 'BUILD',
                    $8::jsonb, $9, $10, $11, $12, $13, $13, $14, $15::text[], $16::jsonb,
                    COALESCE($17, 'r-' || substr(md5(random()::text), 1, 8)), $18, $19, $20)
            ON CONFLICT DO NOTHING
            RETURNING {COLUMNS}""",
        values["id"],
        values["name"],
        values["project_id"],
        values["user_id"],
        values["image_ref"],
        flavor.id,
        flavor.model_dump_json(),
        json.dumps(values["metadata"]),
        values["key_name"],
        values["user_data"],
        values["availability_zone"],
        values["idempotency_key"],
        uow.clock.now(),
        values.get("description"),
        list(values.get("tags") or []),
        json.dumps(values.get("scheduler_hints") or {}),
        values.get("reservation_id"),
        values.get("launch_index", 0),
        values.get("hostname"),
        values.get("networks"),
    )
    if row is None:
        return None
    await uow.emit(
        InstanceRequested(
            instance_id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            flavor=flavor,
            image_ref=row["image_ref"],
            availability_zone=row["availability_zone"],
        )
    )
    return row


async def get(conn: DbConnection, server_id: str, project_id: str | None) -> Any:
    """The live server (any project when ``project_id`` is None)."""
    return await conn.fetchrow(
        f"""SELECT {COLUMNS} FROM cmp_instances
            WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)""",
        server_id,
        project_id,
    )


async def request_delete(uow: UnitOfWork, server_id: str, project_id: str | None) -> bool:
    """Mark the server ``deleting`` and emit the request; False when there is no such server."""
    row = await uow.conn.fetchrow(
        """SELECT project_id, task_state FROM cmp_instances
           WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)
           FOR UPDATE""",
        server_id,
        project_id,
    )
    if row is None:
        return False
    if row["task_state"] == "deleting":
        return True  # already on its way
    await uow.conn.execute(
        "UPDATE cmp_instances SET task_state = 'deleting', updated_at = $2 WHERE id = $1",
        server_id,
        uow.clock.now(),
    )
    await uow.emit(InstanceDeleteRequested(instance_id=server_id, project_id=row["project_id"]))
    return True


async def page(conn: DbConnection, q: ServerQuery) -> list[Any] | None:
    """One page of the servers ``q`` selects, keyset-paginated after ``q.marker``.

    None when the marker is not a server the caller may list.
    """
    where = list(q.conditions)
    if q.marker is not None:
        marker = await conn.fetchrow(
            f"""SELECT {marker_values(q.sort)} FROM cmp_instances m
                WHERE m.id = $1 AND ($2::text IS NULL OR m.project_id = $2)""",
            q.marker,
            q.project_id,
        )
        if marker is None:
            return None
        where.append(keyset(q.sort, [q.arg(value) for value in marker.values()]))
    if q.nothing or q.limit == 0:
        return []
    rows = await conn.fetch(
        f"""SELECT {columns("s")} FROM cmp_instances s
            WHERE {" AND ".join(where) or "true"}
            ORDER BY {order_by(q.sort)}
            LIMIT {q.arg(q.limit)}""",
        *q.args,
    )
    return list(rows)
