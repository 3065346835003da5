"""Who may reach which server, and whether its lock lets them: the checks every servers-API
module shares."""

from __future__ import annotations

from typing import Any

import asyncpg

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.store.conn import DbConnection


def is_admin(req: ApiRequest[Any]) -> bool:
    return req.auth.has_role("admin")


def project_of(req: ApiRequest[Any]) -> str:
    """The caller's project; compute needs a project-scoped token."""
    project = req.auth.project_id
    if project is None:
        raise ApiError(403, "Compute requests need a project-scoped token.")
    return project


def scope_of(req: ApiRequest[Any]) -> str | None:
    """Whose servers a show, action or delete may reach: admins any project's, members their own."""
    return None if is_admin(req) else project_of(req)


def not_found(server_id: str) -> ApiError:
    return ApiError(404, f"Instance {server_id} could not be found.")


def locked_error(server_id: str) -> ApiError:
    return ApiError(409, f"Instance {server_id} is locked")


def check_unlocked(req: ApiRequest[Any], server_id: str, locked_by: str | None) -> None:
    """Nova's ``check_instance_lock``: a locked server refuses the guarded calls, except an admin's.

    Call it with the row's ``locked_by`` wherever Nova guards a call (delete, metadata writes and
    the actions :mod:`cloud.compute.api.server_actions` does not exempt).
    """
    if locked_by is not None and not is_admin(req):
        raise locked_error(server_id)


async def ensure_unlocked(conn: DbConnection, req: ApiRequest[Any], server_id: str) -> None:
    """:func:`check_unlocked` for a server not read yet (a missing server is left to the caller)."""
    if is_admin(req):
        return
    locked_by = await conn.fetchval(
        """SELECT locked_by FROM cmp_instances
           WHERE id = $1 AND deleted_at IS NULL AND project_id = $2""",
        server_id,
        project_of(req),
    )
    check_unlocked(req, server_id, locked_by)


async def placed_server(
    db: DbConnection | asyncpg.Pool[asyncpg.Record], req: ApiRequest[Any], server_id: str
) -> Any:
    """The caller's server (``host``, ``task_state``) for a read its host answers (console output,
    console address): Nova's 404 when the caller cannot see it, 409 while it has no host yet."""
    row = await db.fetchrow(
        """SELECT host, task_state FROM cmp_instances
           WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)""",
        server_id,
        scope_of(req),
    )
    if row is None:
        raise not_found(server_id)
    if not row["host"]:
        raise ApiError(409, f"Instance {server_id} is not ready")
    return row


async def locked_server(conn: DbConnection, server_id: str, scope: str | None, columns: str) -> Any:
    """The live server's ``columns``, row-locked for this transaction; Nova's 404 when ``scope``
    (the caller's project, None for admins: :func:`scope_of`) cannot see it. ``columns`` is SQL
    written in this code, never input."""
    row = await conn.fetchrow(
        f"""SELECT {columns} FROM cmp_instances
            WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)
            FOR UPDATE""",
        server_id,
        scope,
    )
    if row is None:
        raise not_found(server_id)
    return row
