"""``GET /v3/role_assignments``: who holds which role where, directly or effectively.

Entries are shaped as Keystone shapes them::

    {"role": {"id": ...}, "user": {"id": ...}, "scope": {"project": {"id": ...}},
     "links": {"assignment": "<url of the grant>"}}

with ``group`` instead of ``user`` for a group grant, ``scope.domain`` or ``scope.system``
(``{"all": true}``), ``scope["OS-INHERIT:inherited_to"] = "projects"`` for an inherited grant, and in
effective mode ``links.membership`` (a group's grant, per member) and ``links.prior_role`` (a role
another implies). ``include_names`` adds the names of the role, actor, scope and their domains. See
:mod:`cloud.identity.api._assignment_refs` for how effective mode expands grants.
"""

from __future__ import annotations

from typing import Any

from multidict import MultiMapping

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity.api import router
from cloud.identity.api._assignment_refs import Filters, Hierarchy, Ref, direct, effective
from cloud.identity.api._roles_common import query_text
from cloud.identity.api.common import collection_links, enforce, identity, not_found
from cloud.store.conn import DbConnection

_FLAG = {"type": "string"}
QUERY = (
    QueryParam("user.id", description="Only assignments of this user."),
    QueryParam("group.id", description="Only assignments of this group."),
    QueryParam("role.id", description="Only assignments of this role."),
    QueryParam("scope.project.id", description="Only assignments on this project."),
    QueryParam("scope.domain.id", description="Only assignments on this domain."),
    QueryParam("scope.system", description="`all`: only assignments on the system."),
    QueryParam(
        "scope.OS-INHERIT:inherited_to",
        description="`projects`: only inherited assignments; any other value: none of them.",
    ),
    QueryParam("effective", _FLAG, "Expand groups, inheritance and implied roles (key only)."),
    QueryParam("include_names", _FLAG, "Add the names of the entities (key only)."),
    QueryParam("include_subtree", _FLAG, "With scope.project.id: also its subprojects."),
)


def _flag(query: MultiMapping[str], name: str) -> bool:
    """Keystone's key-only booleans: present means true, unless spelled ``0``/``false``."""
    if name not in query:
        return False
    return query[name].strip().lower() not in ("0", "false", "no", "off", "f", "n")


def _filters(req: ApiRequest[Any]) -> Filters:
    """The query as filters; 400 for the combinations Keystone refuses."""
    user, group = query_text(req, "user.id"), query_text(req, "group.id")
    project, domain = query_text(req, "scope.project.id"), query_text(req, "scope.domain.id")
    system = query_text(req, "scope.system")
    if project and domain:
        raise ApiError(400, "Specify a domain or project, not both")
    if system and domain:
        raise ApiError(400, "Specify system or domain, not both")
    if system and project:
        raise ApiError(400, "Specify system or project, not both")
    if user and group:
        raise ApiError(400, "Specify a user or group, not both")
    query = req.query
    inherited_to = query.get("scope.OS-INHERIT:inherited_to")
    return Filters(
        user_id=user,
        group_id=group,
        role_id=query_text(req, "role.id"),
        project_id=project,
        domain_id=domain,
        system=system == "all",
        inherited=None if inherited_to is None else inherited_to == "projects",
        effective=_flag(query, "effective"),
        include_subtree=_flag(query, "include_subtree"),
    )


@router.get("/role_assignments", query=QUERY, errors=(404,))
async def list_role_assignments(req: ApiRequest[Any]) -> dict[str, Any]:
    """List role assignments, direct or effective, filtered by actor, role and scope."""
    f = _filters(req)
    caller_domain = req.auth.domain.id if req.auth.domain else None
    async with identity(req).store.pool.acquire() as conn:
        if f.include_subtree:
            await _enforce_tree(req, conn, f)
        else:
            enforce(req, "identity:list_role_assignments", _target(f, caller_domain))
        refs = await (effective(conn, f) if f.effective else direct(conn, f))
        if caller_domain is not None:  # a domain-scoped caller sees its own domain only
            refs = await _in_domain(conn, refs, caller_domain)
        names = await _Names.load(conn, refs) if _flag(req.query, "include_names") else None
    return {
        "role_assignments": [_entry(req, r, names) for r in refs],
        "links": collection_links(req),
    }


def _target(f: Filters, caller_domain: str | None) -> dict[str, Any]:
    """The listing's policy target: the domain it is restricted to, and the filters."""
    target: dict[str, Any] = {"domain_id": caller_domain or f.domain_id}
    if f.user_id:
        target["user"] = {"id": f.user_id}
    if f.group_id:
        target["group"] = {"id": f.group_id}
    if f.project_id:
        target["project"] = {"id": f.project_id}
    return target


async def _enforce_tree(req: ApiRequest[Any], conn: DbConnection, f: Filters) -> None:
    project = None
    if f.project_id is not None:
        project = await conn.fetchrow(
            "SELECT id, domain_id FROM id_projects WHERE id = $1", f.project_id
        )
    target: dict[str, Any] = {}
    if project is not None:
        target = {"project": dict(project), "domain_id": project["domain_id"]}
    enforce(req, "identity:list_role_assignments_for_tree", target)
    if f.project_id is None:
        raise ApiError(
            400, "scope.project.id must be specified if include_subtree is also specified"
        )
    if project is None:
        raise not_found("project", f.project_id)


async def _in_domain(conn: DbConnection, refs: list[Ref], domain_id: str) -> list[Ref]:
    tree = await Hierarchy.load(conn)
    return [
        r
        for r in refs
        if (r.target_type == "domain" and r.target_id == domain_id)
        or (r.target_type == "project" and tree.domain.get(r.target_id) == domain_id)
    ]


class _Names:
    """The names ``include_names`` adds, fetched in one query per kind of entity."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.domains: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, dict[str, Any]] = {}

    @classmethod
    async def load(cls, conn: DbConnection, refs: list[Ref]) -> _Names:
        names = cls()
        wanted: dict[str, set[str]] = {k: set() for k in ("user", "group", "project", "domain")}
        for r in refs:
            wanted[r.actor_type].add(r.actor_id)
            if r.target_type != "system":
                wanted[r.target_type].add(r.target_id)
        for kind, table, into in (
            ("user", "id_users", names.users),
            ("group", "id_groups", names.groups),
            ("project", "id_projects", names.projects),
        ):
            for row in await conn.fetch(
                f"""SELECT x.id, x.name, x.domain_id, d.name AS domain_name
                    FROM {table} x JOIN id_domains d ON d.id = x.domain_id
                    WHERE x.id = ANY($1)""",
                sorted(wanted[kind]),
            ):
                into[row["id"]] = {
                    "id": row["id"],
                    "name": row["name"],
                    "domain": {"id": row["domain_id"], "name": row["domain_name"]},
                }
        for row in await conn.fetch(
            "SELECT id, name FROM id_domains WHERE id = ANY($1)", sorted(wanted["domain"])
        ):
            names.domains[row["id"]] = {"id": row["id"], "name": row["name"]}
        for row in await conn.fetch(
            """SELECT r.id, r.name, r.domain_id, d.name AS domain_name
               FROM id_roles r LEFT JOIN id_domains d ON d.id = r.domain_id
               WHERE r.id = ANY($1)""",
            sorted({r.role_id for r in refs}),
        ):
            role: dict[str, Any] = {"id": row["id"], "name": row["name"]}
            if row["domain_id"] is not None:
                role["domain"] = {"id": row["domain_id"], "name": row["domain_name"]}
            names.roles[row["id"]] = role
        return names

    def actor(self, kind: str, actor_id: str) -> dict[str, Any]:
        # Like Keystone, an actor gone from the backend keeps its entry with empty names.
        known = self.users if kind == "user" else self.groups
        return known.get(actor_id) or {"id": actor_id, "name": "", "domain": {"id": "", "name": ""}}


def _entry(req: ApiRequest[Any], r: Ref, names: _Names | None) -> dict[str, Any]:
    """One assignment as Keystone renders it."""
    scope: dict[str, Any]
    if r.target_type == "system":
        scope = {"system": {"all": True}}
    elif names is None:
        scope = {r.target_type: {"id": r.target_id}}
    else:
        known = names.projects if r.target_type == "project" else names.domains
        scope = {r.target_type: known.get(r.target_id) or {"id": r.target_id}}
    if r.inherited:
        scope["OS-INHERIT:inherited_to"] = "projects"
    links = {"assignment": req.url(r.grant_path())}
    if r.group_id is not None:
        links["membership"] = req.url(f"/groups/{r.group_id}/users/{r.actor_id}")
    if r.prior_role_id is not None:
        links["prior_role"] = req.url(f"/roles/{r.prior_role_id}/implies/{r.role_id}")
    actor = {"id": r.actor_id} if names is None else names.actor(r.actor_type, r.actor_id)
    role = {"id": r.role_id} if names is None else names.roles.get(r.role_id, {"id": r.role_id})
    return {"role": role, r.actor_type: actor, "scope": scope, "links": links}
