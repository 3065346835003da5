"""Identity reads shared by authentication, validation and the API: plain SQL on one connection."""

from __future__ import annotations

from typing import Any

import asyncpg

from cloud.store.conn import DbConnection

DEFAULT_DOMAIN_ID = "default"

# The roles an actor (a user, or a group they belong to) holds on a target, expanded through
# inheritance (domain -> its projects, project -> its subprojects) and implied roles.
_EFFECTIVE_ROLES = """
WITH RECURSIVE actors AS (
    SELECT 'user'::text AS actor_type, $1::text AS actor_id
    UNION ALL
    SELECT 'group', group_id FROM id_group_members WHERE user_id = $1
), lineage AS (
    SELECT id, parent_id, domain_id, 0 AS depth FROM id_projects WHERE id = $3 AND $2 = 'project'
    UNION ALL
    SELECT p.id, p.parent_id, p.domain_id, l.depth + 1
    FROM id_projects p JOIN lineage l ON p.id = l.parent_id
), granted AS (
    SELECT a.role_id
    FROM id_assignments a JOIN actors x USING (actor_type, actor_id)
    WHERE (a.target_type = $2 AND a.target_id = $3 AND NOT a.inherited)
       OR (a.inherited AND a.target_type = 'project'
           AND a.target_id IN (SELECT id FROM lineage WHERE depth > 0))
       OR (a.inherited AND a.target_type = 'domain'
           AND a.target_id = (SELECT domain_id FROM lineage WHERE depth = 0))
), implied AS (
    SELECT role_id FROM granted
    UNION
    SELECT i.implied_role_id FROM id_implied_roles i JOIN implied ON i.prior_role_id = implied.role_id
)
SELECT r.id, r.name FROM id_roles r
WHERE r.id IN (SELECT role_id FROM implied) AND r.domain_id IS NULL
ORDER BY r.name
"""


async def effective_roles(
    conn: DbConnection, user_id: str, target_type: str, target_id: str
) -> list[asyncpg.Record]:
    """(id, name) of every global role ``user_id`` holds on the target, directly or not."""
    return await conn.fetch(_EFFECTIVE_ROLES, user_id, target_type, target_id)


async def user_by_id(conn: DbConnection, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT u.*, d.name AS domain_name, d.enabled AS domain_enabled
           FROM id_users u JOIN id_domains d ON d.id = u.domain_id WHERE u.id = $1""",
        user_id,
    )


async def user_by_name(
    conn: DbConnection, name: str, domain_id: str | None, domain_name: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT u.*, d.name AS domain_name, d.enabled AS domain_enabled
           FROM id_users u JOIN id_domains d ON d.id = u.domain_id
           WHERE u.name = $1 AND (d.id = $2 OR ($2::text IS NULL AND d.name = $3))""",
        name,
        domain_id,
        domain_name,
    )


async def project_by_ref(
    conn: DbConnection,
    project_id: str | None,
    name: str | None,
    domain_id: str | None,
    domain_name: str | None,
) -> asyncpg.Record | None:
    """A project by id, or by name within a domain given by id or name."""
    return await conn.fetchrow(
        """SELECT p.*, d.name AS domain_name, d.enabled AS domain_enabled
           FROM id_projects p JOIN id_domains d ON d.id = p.domain_id
           WHERE ($1::text IS NOT NULL AND p.id = $1)
              OR ($1::text IS NULL AND p.name = $2 AND (d.id = $3 OR ($3::text IS NULL AND d.name = $4)))""",
        project_id,
        name,
        domain_id,
        domain_name,
    )


async def domain_by_ref(
    conn: DbConnection, domain_id: str | None, name: str | None
) -> asyncpg.Record | None:
    if domain_id is not None:
        return await conn.fetchrow("SELECT * FROM id_domains WHERE id = $1", domain_id)
    return await conn.fetchrow("SELECT * FROM id_domains WHERE name = $1", name)


async def catalog(conn: DbConnection) -> list[dict[str, Any]]:
    """The service catalog as tokens carry it: enabled services with their enabled endpoints."""
    rows = await conn.fetch(
        """SELECT s.id AS service_id, s.type, s.name, e.id, e.interface, e.region_id, e.url
           FROM id_services s JOIN id_endpoints e ON e.service_id = s.id
           WHERE s.enabled AND e.enabled ORDER BY s.type, s.id, e.interface"""
    )
    services: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = services.setdefault(
            r["service_id"],
            {"endpoints": [], "id": r["service_id"], "type": r["type"], "name": r["name"] or ""},
        )
        entry["endpoints"].append(
            {
                "id": r["id"],
                "interface": r["interface"],
                "region_id": r["region_id"],
                "url": r["url"],
                "region": r["region_id"],
            }
        )
    return list(services.values())
