"""The project hierarchy: a project's parents and subtree, and the projects a user has a role on."""

from __future__ import annotations

from typing import Any

import asyncpg

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.identity.api._resources_render import render_project, target_of
from cloud.identity.api.common import allowed
from cloud.store.conn import DbConnection

# Keystone's max_project_tree_depth: a top-level project is at depth 1.
MAX_DEPTH = 5

_LINEAGE = """
WITH RECURSIVE up AS (
    SELECT p.*, 0 AS depth FROM id_projects p WHERE p.id = $1
    UNION ALL
    SELECT p.*, up.depth + 1 FROM id_projects p JOIN up ON p.id = up.parent_id
)
SELECT * FROM up ORDER BY depth
"""

_SUBTREE = """
WITH RECURSIVE down AS (
    SELECT p.*, 1 AS depth FROM id_projects p WHERE p.parent_id = $1
    UNION ALL
    SELECT p.*, down.depth + 1 FROM id_projects p JOIN down ON p.parent_id = down.id
)
SELECT * FROM down ORDER BY depth, name
"""

# Projects where the user, or a group of theirs, holds a role: directly, inherited from a parent
# project, or inherited from the project's domain (as ``repo.effective_roles`` reads grants).
_USER_PROJECTS = """
WITH RECURSIVE actors AS (
    SELECT 'user'::text AS actor_type, $1::text AS actor_id
    UNION ALL
    SELECT 'group', group_id FROM id_group_members WHERE user_id = $1
), grants AS (
    SELECT a.target_type, a.target_id, a.inherited
    FROM id_assignments a JOIN actors x USING (actor_type, actor_id)
), inherited_below AS (
    SELECT p.id FROM id_projects p
    JOIN grants g ON g.inherited AND g.target_type = 'project' AND p.parent_id = g.target_id
    UNION
    SELECT p.id FROM id_projects p JOIN inherited_below i ON p.parent_id = i.id
)
SELECT target_id AS id FROM grants WHERE target_type = 'project' AND NOT inherited
UNION
SELECT id FROM inherited_below
UNION
SELECT p.id FROM id_projects p
JOIN grants g ON g.inherited AND g.target_type = 'domain' AND g.target_id = p.domain_id
"""


async def lineage(conn: DbConnection, project_id: str) -> list[asyncpg.Record]:
    """The project and its parents, nearest first."""
    return await conn.fetch(_LINEAGE, project_id)


async def subtree(conn: DbConnection, project_id: str) -> list[asyncpg.Record]:
    """Every project below this one, shallowest first."""
    return await conn.fetch(_SUBTREE, project_id)


async def subtree_enabled(conn: DbConnection, project_id: str) -> bool:
    """Whether any project below this one is enabled."""
    return any(r["enabled"] for r in await subtree(conn, project_id))


async def user_project_ids(conn: DbConnection, user_id: str) -> list[str]:
    return [r["id"] for r in await conn.fetch(_USER_PROJECTS, user_id)]


def _flag(req: ApiRequest[Any], name: str) -> bool:
    value = req.query.get(name)
    return value is not None and value.strip().lower() not in ("0", "false", "no", "off")


async def expand(
    req: ApiRequest[Any], conn: DbConnection, row: asyncpg.Record, body: dict[str, Any]
) -> dict[str, Any]:
    """``body`` with the parents or subtree Keystone's ``parents_as_*``/``subtree_as_*`` ask for.

    The ``*_as_list`` forms hold only the projects the caller may see."""
    parents_ids, parents_list = _flag(req, "parents_as_ids"), _flag(req, "parents_as_list")
    subtree_ids, subtree_list = _flag(req, "subtree_as_ids"), _flag(req, "subtree_as_list")
    if parents_ids and parents_list:
        raise ApiError(
            400, "Cannot use parents_as_list and parents_as_ids query params at the same time."
        )
    if subtree_ids and subtree_list:
        raise ApiError(
            400, "Cannot use subtree_as_list and subtree_as_ids query params at the same time."
        )
    if parents_ids or parents_list:
        parents = await lineage(conn, row["parent_id"]) if row["parent_id"] else []
        if parents_ids:
            nested: dict[str, Any] = {row["domain_id"]: None}
            for parent in reversed(parents):
                nested = {parent["id"]: nested}
            body["parents"] = nested
        else:
            body["parents"] = _visible(req, parents)
    if subtree_ids or subtree_list:
        below = await subtree(conn, row["id"])
        body["subtree"] = _nest(row["id"], below) if subtree_ids else _visible(req, below)
    return body


def _visible(req: ApiRequest[Any], rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [
        {"project": render_project(r, req)}
        for r in rows
        if allowed(req, "identity:get_project", target_of("project", r))
    ]


def _nest(root: str, rows: list[asyncpg.Record]) -> dict[str, Any] | None:
    children: dict[str, list[str]] = {}
    for r in rows:
        children.setdefault(r["parent_id"], []).append(r["id"])

    def walk(project_id: str) -> dict[str, Any] | None:
        kids = children.get(project_id)
        return {kid: walk(kid) for kid in kids} if kids else None

    return walk(root)
