"""The scheduler's reads: every host's state, and one instance's request (hints, group, image).

Hosts come with their effective availability zone (a zoned aggregate wins over the zone the agent
reports), their live instance count (claims) and their aggregates' metadata, in two queries.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from cloud.scheduler.state import HostState, Request
from cloud.store.conn import DbConnection
from schemas.compute import FlavorSpec


async def load_hosts(conn: DbConnection) -> list[HostState]:
    rows = await conn.fetch(
        """SELECT h.host, vcpus, ram_mb, disk_gb, vcpus_used, ram_mb_used, disk_gb_used, cpu_ratio,
                  ram_ratio, disk_ratio, enabled, last_report_at, availability_zone, forced_down,
                  coalesce(c.n, 0)::int AS num_instances, coalesce(hypervisor_type, 'fake')
           FROM cmp_hosts h
           LEFT JOIN (SELECT host, count(*) AS n FROM cmp_claims GROUP BY host) c
             ON c.host = h.host
           ORDER BY h.host"""
    )
    aggregates = await conn.fetch(
        """SELECT ah.host, a.metadata::text AS metadata
           FROM cmp_aggregate_hosts ah JOIN cmp_aggregates a ON a.id = ah.aggregate_id
           ORDER BY a.id"""
    )
    meta: dict[str, dict[str, set[str]]] = {}
    zones: dict[str, str] = {}
    for agg in aggregates:
        values = json.loads(agg["metadata"])
        per_host = meta.setdefault(agg["host"], {})
        for key, value in values.items():
            per_host.setdefault(key, set()).add(str(value))
        if "availability_zone" in values:
            zones.setdefault(agg["host"], str(values["availability_zone"]))
    hosts = []
    for row in rows:  # columns in HostState's field order: positional is the fastest build
        host = HostState(*row)
        if host.host in meta:
            host.aggregate_metadata = {k: frozenset(v) for k, v in meta[host.host].items()}
            host.availability_zone = zones.get(host.host, host.availability_zone)
        hosts.append(host)
    return hosts


def _id_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


async def _hosts_of(conn: DbConnection, instance_ids: list[str]) -> frozenset[str]:
    rows = await conn.fetch(
        """SELECT coalesce(c.host, i.host) AS host FROM cmp_instances i
           LEFT JOIN cmp_claims c ON c.instance_id = i.id
           WHERE i.id = ANY($1::text[]) AND i.deleted_at IS NULL""",
        instance_ids,
    )
    return frozenset(r["host"] for r in rows if r["host"])


async def build_request(
    conn: DbConnection,
    instance_id: str,
    row: Any,
    *,
    zone: str | None,
    now: datetime,
    down_after: timedelta,
    excluded: frozenset[str],
    max_instances_per_host: int,
) -> Request:
    """The request of the locked instance row (task_state, project, flavor snapshot, hints)."""
    flavor = FlavorSpec.model_validate_json(row["flavor"])
    hints: dict[str, Any] = json.loads(row["hints"] or "{}")
    props = await conn.fetchval(
        "SELECT properties::text FROM img_images WHERE id = $1", row["image_ref"]
    )
    image_properties = {k: str(v) for k, v in json.loads(props or "{}").items()}
    group_policy: str | None = None
    group_hosts: dict[str, int] = {}
    max_per_host = 1
    group_ids = _id_list(hints.get("group"))
    if group_ids:
        group = await conn.fetchrow(
            "SELECT id, policy, rules::text AS rules FROM cmp_server_groups WHERE id = $1",
            group_ids[0],
        )
        if group is not None:
            # Serialises the placements of one group: each sees the claims of the others.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"cmp-group:{group['id']}",
            )
            group_policy = group["policy"]
            max_per_host = int(json.loads(group["rules"]).get("max_server_per_host", 1))
            members = await conn.fetch(
                """SELECT c.host, count(*)::int AS n FROM cmp_server_group_members m
                   JOIN cmp_claims c ON c.instance_id = m.instance_id
                   WHERE m.group_id = $1 AND m.instance_id <> $2 GROUP BY c.host""",
                group["id"],
                instance_id,
            )
            group_hosts = {m["host"]: m["n"] for m in members}
    same = _id_list(hints.get("same_host"))
    different = _id_list(hints.get("different_host"))
    return Request(
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb + flavor.swap_mb,
        disk_gb=flavor.disk_gb + flavor.ephemeral_gb,
        now=now,
        availability_zone=zone,
        down_after=down_after,
        project_id=row["project_id"],
        extra_specs=flavor.extra_specs,
        image_properties=image_properties,
        group_policy=group_policy,
        group_hosts=group_hosts,
        max_server_per_host=max_per_host,
        same_host=await _hosts_of(conn, same) if same else None,
        different_host=await _hosts_of(conn, different) if different else None,
        excluded_hosts=excluded,
        max_instances_per_host=max_instances_per_host,
    )
