"""``/os-server-groups``: affinity, anti-affinity and their soft variants.

Before 2.64 a group is created with ``policies`` (one item; the soft ones from 2.15); from 2.64
with ``policy`` plus ``rules`` (``max_server_per_host``, anti-affinity only). Members are the live
servers booted with the ``group`` scheduler hint (:mod:`cloud.compute.boot_policy` records them in
the boot transaction); the scheduler honours the policy. Creating counts against the project's
``server_groups`` quota under the project's quota lock.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies, quotas
from cloud.compute.api import router
from cloud.compute.api.flavors import allowed, enforce, service
from cloud.compute.api.microversion import version
from cloud.store.conn import DbConnection
from schemas.compute_placement import ServerGroupCreated, ServerGroupDeleted

HARD = ("affinity", "anti-affinity")
SOFT = ("soft-affinity", "soft-anti-affinity")
COLUMNS = "id, name, project_id, user_id, policy, rules::text AS rules"


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_group: Any


def _invalid(field: str, value: Any) -> ApiError:
    return ApiError(400, f"Invalid input for field/attribute {field}. Value: {value}.")


def _parse(body: Any, ver: tuple[int, int]) -> tuple[str, str, dict[str, int]]:
    """(name, policy, rules) of a create body at ``ver``."""
    new_style = ver >= (2, 64)
    keys = {"name", "policy", "rules"} if new_style else {"name", "policies"}
    if not isinstance(body, dict) or set(body) - keys or "name" not in body:
        raise _invalid("server_group", body)
    name = body["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or name.strip() != name:
        raise _invalid("name", name)
    known = HARD + SOFT if ver >= (2, 15) else HARD
    if not new_style:
        given = body.get("policies")
        if not isinstance(given, list) or len(given) != 1 or given[0] not in known:
            raise _invalid("policies", given)
        return name, given[0], {}
    policy = body.get("policy")
    if policy not in known:
        raise _invalid("policy", policy)
    rules = body.get("rules", {})
    if not isinstance(rules, dict) or set(rules) - {"max_server_per_host"}:
        raise _invalid("rules", rules)
    if rules and policy != "anti-affinity":
        raise ApiError(400, "Only anti-affinity policy supports rules.")
    limit = rules.get("max_server_per_host")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise _invalid("max_server_per_host", limit)
    return name, str(policy), ({"max_server_per_host": limit} if limit is not None else {})


async def _members(conn: DbConnection, group_id: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT m.instance_id FROM cmp_server_group_members m
           JOIN cmp_instances i ON i.id = m.instance_id
           WHERE m.group_id = $1 AND i.deleted_at IS NULL ORDER BY i.created_at, i.id""",
        group_id,
    )
    return [r["instance_id"] for r in rows]


async def view(req: ApiRequest[Any], conn: DbConnection, row: Any) -> dict[str, Any]:
    ver = version(req)
    out: dict[str, Any] = {"id": row["id"], "name": row["name"]}
    if ver >= (2, 64):
        out["policy"] = row["policy"]
        out["rules"] = json.loads(row["rules"])
    else:
        out["policies"] = [row["policy"]]
    out["members"] = await _members(conn, row["id"])
    if ver < (2, 64):
        out["metadata"] = {}
    if ver >= (2, 13):
        out["project_id"] = row["project_id"]
        out["user_id"] = row["user_id"]
    return out


def _project(req: ApiRequest[Any]) -> str:
    return req.auth.project_id or ""


@router.post("/os-server-groups", body=GroupBody, errors=(400, 403))
async def create_group(req: ApiRequest[GroupBody]) -> dict[str, Any]:
    """Create a server group in the caller's project."""
    project = _project(req)
    enforce(req, policies.GROUPS_CREATE, {"project_id": project})
    name, policy, rules = _parse(req.body.server_group, version(req))
    group_id = str(uuid.uuid4())
    async with service(req).write() as uow:
        await quotas.lock_project(uow.conn, project)
        limit = (await quotas.limits_of(uow.conn, project))["server_groups"]
        used = (await quotas.usage_of(uow.conn, project))["server_groups"]
        if 0 <= limit <= used:
            raise ApiError(403, "Quota exceeded, too many server groups.")
        row = await uow.conn.fetchrow(
            f"""INSERT INTO cmp_server_groups (id, name, project_id, user_id, policy, rules)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING {COLUMNS}""",
            group_id,
            name,
            project,
            req.auth.user.id,
            policy,
            json.dumps(rules),
        )
        await uow.emit(
            ServerGroupCreated(
                group_id=group_id, project_id=project, name=name, policy=policy, rules=rules
            )
        )
        return {"server_group": await view(req, uow.conn, row)}


def _int_param(req: ApiRequest[Any], name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0 or (name == "limit" and value < 1):
        raise ApiError(400, f"Invalid input for query parameters {name}. Value: {raw}.")
    return value


@router.get("/os-server-groups", query=("all_projects", "limit", "offset"), errors=(400, 403))
async def list_groups(req: ApiRequest[Any]) -> dict[str, Any]:
    """The caller's project's groups (admins: every project's with ``all_projects``)."""
    project = _project(req)
    enforce(req, policies.GROUPS_INDEX, {"project_id": project})
    every = req.query.get("all_projects", "").lower() in ("1", "true", "yes", "on")
    every = every and allowed(req, policies.GROUPS_INDEX_ALL)
    limit, offset = _int_param(req, "limit", 1000), _int_param(req, "offset", 0)
    async with service(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM cmp_server_groups WHERE $1::text IS NULL OR project_id = $1
                ORDER BY created_at, id LIMIT $2 OFFSET $3""",
            None if every else project,
            limit,
            offset,
        )
        return {"server_groups": [await view(req, conn, r) for r in rows]}


async def _find(req: ApiRequest[Any], conn: DbConnection, rule: str) -> Any:
    group_id = req.params["group_id"]
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM cmp_server_groups WHERE id = $1", group_id)
    # Another project's group is not found (an admin may see any).
    if row is None or not allowed(req, rule, {"project_id": row["project_id"]}):
        raise ApiError(404, f"Instance group {group_id} could not be found.")
    return row


@router.get("/os-server-groups/{group_id}", errors=(404,))
async def show_group(req: ApiRequest[Any]) -> dict[str, Any]:
    """One server group with its members."""
    async with service(req).store.pool.acquire() as conn:
        row = await _find(req, conn, policies.GROUPS_SHOW)
        return {"server_group": await view(req, conn, row)}


@router.delete("/os-server-groups/{group_id}", status=204, errors=(404,))
async def delete_group(req: ApiRequest[Any]) -> None:
    """Delete a server group; its servers stay."""
    async with service(req).write() as uow:
        row = await _find(req, uow.conn, policies.GROUPS_DELETE)
        await uow.conn.execute("DELETE FROM cmp_server_groups WHERE id = $1", row["id"])
        await uow.emit(ServerGroupDeleted(group_id=row["id"], project_id=row["project_id"]))
