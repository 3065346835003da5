"""Role assignments as Keystone's ``/role_assignments`` computes them, direct or effective.

Direct mode lists grants as stored. Effective mode answers "what does this actually give whom":

1. a group grant becomes one entry per member (``links.membership`` names the membership);
2. an inherited grant (``OS-INHERIT``) becomes one entry per project it reaches: every project of
   the domain, or every project below the project; the grant itself is not listed;
3. every entry is followed by entries for the roles its role implies, transitively
   (``links.prior_role`` names the rule);
4. domain-specific roles are then dropped (they never reach a token) and the ``role.id`` filter
   applied last, so that ``role.id=reader`` finds readers by implication too.

As in Keystone, effective mode leaves system grants out, except that ``scope.system=all``
(which Keystone ignores there) lists them expanded the same way: what a system token carries.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.identity.api.common import not_found
from cloud.store.conn import DbConnection


@dataclass(frozen=True)
class Filters:
    user_id: str | None = None
    group_id: str | None = None
    role_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False
    inherited: bool | None = None  # None: both; True: only OS-INHERIT grants; False: none of them
    effective: bool = False
    include_subtree: bool = False


@dataclass(frozen=True)
class Ref:
    """One entry: an actor holds a role on a target, and where that came from."""

    actor_type: str  # user | group
    actor_id: str
    target_type: str  # project | domain | system
    target_id: str
    role_id: str
    inherited: bool
    source_type: str | None = None  # an inherited grant's own target, once expanded
    source_id: str | None = None
    group_id: str | None = None  # the group a user entry comes from
    granted_role_id: str | None = None  # the role granted, for an implied entry
    prior_role_id: str | None = None  # the role that implied this one

    def grant_path(self) -> str:
        """The URL path (under the identity root) of the grant this entry comes from."""
        actor = (
            f"groups/{self.group_id}" if self.group_id else f"{self.actor_type}s/{self.actor_id}"
        )
        role = self.granted_role_id or self.role_id
        if self.target_type == "system":
            return f"/system/{actor}/roles/{role}"
        target_type = self.source_type or self.target_type
        target_id = self.source_id or self.target_id
        path = f"/{target_type}s/{target_id}/{actor}/roles/{role}"
        return f"/OS-INHERIT{path}/inherited_to_projects" if self.inherited else path


class Hierarchy:
    """Projects as a tree (loaded once per listing that needs it)."""

    def __init__(self, rows: list[Any]) -> None:
        self.parent: dict[str, str | None] = {r["id"]: r["parent_id"] for r in rows}
        self.domain: dict[str, str] = {r["id"]: r["domain_id"] for r in rows}
        self.children: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r["parent_id"] is not None:
                self.children[r["parent_id"]].append(r["id"])
        for kids in self.children.values():
            kids.sort()

    @classmethod
    async def load(cls, conn: DbConnection) -> Hierarchy:
        return cls(list(await conn.fetch("SELECT id, parent_id, domain_id FROM id_projects")))

    def below(self, project_id: str) -> list[str]:
        """Every project under ``project_id`` (not itself), depth first."""
        out: list[str] = []
        stack = list(reversed(self.children.get(project_id, [])))
        while stack:
            pid = stack.pop()
            if pid in out:  # a malformed cycle must not loop forever
                continue
            out.append(pid)
            stack.extend(reversed(self.children.get(pid, [])))
        return out

    def above(self, project_id: str) -> list[str]:
        """The ancestors of ``project_id``, nearest first."""
        out: list[str] = []
        parent = self.parent.get(project_id)
        while parent is not None and parent not in out:
            out.append(parent)
            parent = self.parent.get(parent)
        return out

    def in_domain(self, domain_id: str) -> list[str]:
        return sorted(p for p, d in self.domain.items() if d == domain_id)


_COLUMNS = "actor_type, actor_id, target_type, target_id, role_id, inherited"
_ORDER = "ORDER BY target_type, target_id, actor_type, actor_id, inherited, role_id"


def _ref(row: Any) -> Ref:
    return Ref(*(row[c] for c in _COLUMNS.split(", ")))


async def direct(conn: DbConnection, f: Filters) -> list[Ref]:
    """The grants matching the filters, as stored."""
    w = Where()
    if f.user_id is not None:
        w.add("actor_type = 'user' AND actor_id = {}", f.user_id)
    if f.group_id is not None:
        w.add("actor_type = 'group' AND actor_id = {}", f.group_id)
    w.eq("role_id", f.role_id)
    if f.project_id is not None:
        ids = [f.project_id]
        if f.include_subtree:
            ids += (await Hierarchy.load(conn)).below(f.project_id)
        w.add("target_type = 'project' AND target_id = ANY({})", ids)
    elif f.domain_id is not None:
        w.add("target_type = 'domain' AND target_id = {}", f.domain_id)
    elif f.system:
        w.add("target_type = 'system'")
    if f.inherited is not None:
        w.add("inherited = {}", f.inherited)
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM id_assignments {w.sql()} {_ORDER}", *w.args)
    return [_ref(r) for r in rows]


async def effective(conn: DbConnection, f: Filters) -> list[Ref]:
    """What the grants matching the filters give each user (see the module docstring)."""
    if f.group_id is not None:
        raise ApiError(
            400, "Combining effective and group filter will always result in an empty list."
        )
    if f.domain_id is not None and f.inherited:
        raise ApiError(
            400,
            "Combining effective, domain and inherited filters will always "
            "result in an empty list.",
        )
    tree = await Hierarchy.load(conn)
    rows = await _candidates(conn, f, tree)
    members = await _members(conn, {r.actor_id for r in rows if r.actor_type == "group"}, f)
    refs: list[Ref] = []
    for row in rows:
        for ref in _spread(row, f, tree):
            if ref.actor_type == "group":
                refs += [
                    replace(ref, actor_type="user", actor_id=u, group_id=ref.actor_id)
                    for u in members.get(ref.actor_id, [])
                ]
            else:
                refs.append(ref)
    refs = await _with_implied(conn, refs)
    domain_roles = {
        r["id"] for r in await conn.fetch("SELECT id FROM id_roles WHERE domain_id IS NOT NULL")
    }
    refs = [r for r in refs if r.role_id not in domain_roles]
    if f.role_id is not None:
        refs = [r for r in refs if r.role_id == f.role_id]
    return list(dict.fromkeys(refs))


async def _candidates(conn: DbConnection, f: Filters, tree: Hierarchy) -> list[Ref]:
    """Every stored grant that could yield an entry matching the filters."""
    w = Where()
    if f.user_id is not None:
        w.add(
            "(actor_type = 'user' AND actor_id = {}) OR (actor_type = 'group' AND actor_id IN"
            " (SELECT group_id FROM id_group_members WHERE user_id = {}))",
            f.user_id,
            f.user_id,
        )
    direct_ok = f.inherited is not True
    inherited_ok = f.inherited is not False
    if f.project_id is not None:
        if f.project_id not in tree.domain:
            raise not_found("project", f.project_id)
        ids = [f.project_id, *(tree.below(f.project_id) if f.include_subtree else [])]
        sources = tree.above(f.project_id) + (ids if f.include_subtree else [])
        w.add(
            "(NOT inherited AND {} AND target_type = 'project' AND target_id = ANY({}))"
            " OR (inherited AND {} AND ((target_type = 'domain' AND target_id = {})"
            " OR (target_type = 'project' AND target_id = ANY({}))))",
            direct_ok,
            ids,
            inherited_ok,
            tree.domain[f.project_id],
            sources,
        )
    elif f.domain_id is not None:  # domains inherit nothing: only their own direct grants
        w.add("target_type = 'domain' AND target_id = {} AND NOT inherited", f.domain_id)
    elif f.system:
        w.add("target_type = 'system' AND {}", direct_ok)
    else:
        w.add("target_type <> 'system'")
        if f.inherited is not None:
            w.add("inherited = {}", f.inherited)
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM id_assignments {w.sql()} {_ORDER}", *w.args)
    return [_ref(r) for r in rows]


async def _members(conn: DbConnection, groups: set[str], f: Filters) -> dict[str, list[str]]:
    """group id -> the users it expands to (only the filtered user, when there is one)."""
    if f.user_id is not None:
        return {g: [f.user_id] for g in groups}
    rows = await conn.fetch(
        "SELECT group_id, user_id FROM id_group_members WHERE group_id = ANY($1)"
        " ORDER BY group_id, user_id",
        sorted(groups),
    )
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        out[r["group_id"]].append(r["user_id"])
    return out


def _spread(row: Ref, f: Filters, tree: Hierarchy) -> list[Ref]:
    """An inherited grant as one entry per project it reaches (within the filter)."""
    if not row.inherited:
        return [row]
    if f.project_id is not None:
        projects = [f.project_id]
        if f.include_subtree:
            projects += tree.below(f.project_id)
            if row.target_type == "project" and row.target_id in projects:
                projects = tree.below(row.target_id)
    elif row.target_type == "domain":
        projects = tree.in_domain(row.target_id)
    else:
        projects = tree.below(row.target_id)
    return [
        replace(
            row,
            target_type="project",
            target_id=p,
            source_type=row.target_type,
            source_id=row.target_id,
        )
        for p in projects
    ]


async def _with_implied(conn: DbConnection, refs: list[Ref]) -> list[Ref]:
    """Each entry followed by one for every role its role implies, transitively."""
    implies: dict[str, list[str]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT prior_role_id, implied_role_id FROM id_implied_roles ORDER BY implied_role_id"
    ):
        implies[r["prior_role_id"]].append(r["implied_role_id"])
    out: list[Ref] = []
    for ref in refs:
        out.append(ref)
        seen = {ref.role_id}
        queue = [ref]
        while queue:
            current = queue.pop(0)
            for implied in implies.get(current.role_id, []):
                if implied in seen:
                    continue
                seen.add(implied)
                copy = replace(
                    current,
                    role_id=implied,
                    prior_role_id=current.role_id,
                    granted_role_id=ref.role_id,
                )
                out.append(copy)
                queue.append(copy)
    return out
