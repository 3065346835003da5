"""The query string of ``GET /servers[/detail]``: Nova's filters, sorting and paging, as SQL.

:func:`parse` is pure: it turns the query into WHERE conditions (with ``$n`` arguments), sort
expressions and a page, or raises the 4xx Nova answers. It follows Nova's ``_get_servers``:

* Non-admins may use only the filters Nova lets them use at the request's microversion; the others
  are dropped silently, as Nova's ``remove_invalid_options`` does. ``all_tenants`` is admin-only
  (403). From 2.75 a parameter Nova does not know is a 400; before it is ignored.
* Without ``deleted`` (admins), a list shows live servers only, unless ``changes-since`` or
  ``changes-before`` is given: a time window includes the servers deleted within it.
* ``ip``/``ip6`` match nothing: servers have no addresses until networking exists.
* Sort keys are Nova's ``VALID_SORT_KEYS``; keys that only ever sort equal here (attributes this
  cloud does not keep) and the keys Nova ignores are dropped; ``host``/``node`` are admin-only.
  ``created_at`` and ``id`` end every order, so keyset paging is total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

from cloud.api.errors import ApiError
from cloud.api.listing import parse_limit
from cloud.compute.api import server_query_keys as vocab

Version = tuple[int, int]
DEFAULT_LIMIT = MAX_LIMIT = 1000
_TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE = frozenset({"0", "f", "false", "off", "n", "no"})


@dataclass
class ServerQuery:
    """A list request as SQL pieces; ``conditions`` use ``$1``.. over ``args`` (alias ``s``)."""

    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (expression of {t}, descending)
    limit: int = DEFAULT_LIMIT
    marker: str | None = None
    project_id: str | None = None  # the scope a marker must be in (None: any project)
    deleted: bool | None = False  # False: live only, True: deleted only, None: both
    nothing: bool = False  # a filter no server can match (the answer is an empty list)

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def parse_bool(name: str, value: str, *, strict: bool = True) -> bool:
    """oslo's ``bool_from_string``: strict values are a 400 when they are not a boolean."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE or not strict:
        return False
    raise ApiError(
        400,
        f"Invalid input received: Unrecognized value '{value}' for {name}, acceptable values "
        f"are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'",
    )


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 timestamp (naive means UTC); anything else is Nova's 400."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError(400, f"Invalid filter field: {name}.") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def user_options(ver: Version) -> frozenset[str]:
    return frozenset(o for since, opts in vocab.USER_OPTIONS if ver >= since for o in opts)


def known_options(ver: Version) -> frozenset[str]:
    return frozenset(k for k in vocab.KNOWN if ver >= vocab.SINCE.get(k, (2, 1)))


def _all_tenants(query: MultiMapping[str]) -> bool:
    if "all_tenants" not in query:
        return False
    raw = query.getall("all_tenants")[-1]
    return raw == "" or parse_bool("all_tenants", raw)


def parse(
    query: MultiMapping[str],
    *,
    ver: Version,
    admin: bool,
    project_id: str,
    max_limit: int = MAX_LIMIT,
) -> ServerQuery:
    """Nova's list semantics for ``query`` (see the module docstring); 400/403 on bad input."""
    if ver >= (2, 75):
        unknown = sorted(set(query) - known_options(ver))
        if unknown:
            raise ApiError(
                400,
                f"Invalid input for query parameters {unknown[0]}. Value: "
                f"{query.getall(unknown[0])}. Additional properties are not allowed "
                f"('{unknown[0]}' was unexpected)",
            )
    q = ServerQuery(limit=parse_limit(query, default=max_limit, maximum=max_limit))
    q.marker = query.getall("marker")[-1] if "marker" in query else None
    allowed = known_options(ver) if admin else user_options(ver)
    # The last value of each filter counts (webob's MultiDict), except the multi-valued ones.
    opts = {k: query.getall(k)[-1] for k in set(query) if k in allowed}
    statuses = query.getall("status", []) if "status" in allowed else []

    if _all_tenants(query):
        if not admin:
            raise ApiError(
                403,
                "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be "
                "performed.",
            )
        q.project_id = opts.get("project_id") or opts.get("tenant_id") or None
    else:
        q.project_id = project_id
    if q.project_id is not None:
        q.conditions.append(f"s.project_id = {q.arg(q.project_id)}")

    _filters(q, opts, statuses, ver)
    q.sort = _sort(query, ver=ver, admin=admin)
    return q


def _filters(q: ServerQuery, opts: dict[str, str], statuses: list[str], ver: Version) -> None:
    for name in ("name", "display_name", "description"):
        if name in opts:
            column = "description" if name == "description" else "name"
            q.conditions.append(f"s.{column} ~ {q.arg(opts[name])}")
    if statuses:
        wanted = sorted({s.strip().upper() for s in statuses})
        if not set(wanted) <= vocab.STATUSES:
            if ver >= (2, 38):
                raise ApiError(400, "Invalid status value")
            q.nothing = True  # Nova answers an empty list before 2.38
        q.conditions.append(f"s.status = ANY({q.arg(wanted)}::text[])")
    for name in ("image", "image_ref"):
        if name in opts:
            image = opts[name].rstrip("/").rsplit("/", 1)[-1]
            q.conditions.append(f"s.image_ref = {q.arg(image)}")
    for name, column in vocab.EXACT.items():
        if name in opts:
            q.conditions.append(f"s.{column} = {q.arg(opts[name])}")
    for name, column in vocab.INT.items():
        if name in opts:
            try:
                number = int(opts[name])
            except ValueError:
                raise ApiError(400, f"Invalid filter field: {name}.") from None
            q.conditions.append(f"s.{column} = {q.arg(number)}")
    if "locked" in opts:
        locked = parse_bool("locked", opts["locked"])
        q.conditions.append(f"s.locked_by IS {'NOT ' if locked else ''}NULL")
    if "ip" in opts or "ip6" in opts:
        q.nothing = True  # no server has an address yet
    _tags(q, opts)
    _window(q, opts)


def _tags(q: ServerQuery, opts: dict[str, str]) -> None:
    ops = {
        "tags": "s.tags @> {}",
        "tags-any": "s.tags && {}",
        "not-tags": "NOT (s.tags @> {})",
        "not-tags-any": "NOT (s.tags && {})",
    }
    for name, template in ops.items():
        if name in opts:
            tags = [t.strip() for t in opts[name].split(",") if t.strip()]
            if tags:
                q.conditions.append(template.format(f"{q.arg(tags)}::text[]"))


def _window(q: ServerQuery, opts: dict[str, str]) -> None:
    since = parse_time("changes-since", opts["changes-since"]) if "changes-since" in opts else None
    before = (
        parse_time("changes-before", opts["changes-before"]) if "changes-before" in opts else None
    )
    if since is not None and before is not None and since > before:
        raise ApiError(
            400, "The value of changes-since must be less than or equal to changes-before."
        )
    if since is not None:
        q.conditions.append(f"s.updated_at >= {q.arg(since)}")
    if before is not None:
        q.conditions.append(f"s.updated_at <= {q.arg(before)}")
    if "deleted" in opts:
        q.deleted = parse_bool("deleted", opts["deleted"], strict=False)
    elif since is not None or before is not None:
        q.deleted = None
    if q.deleted is not None:
        q.conditions.append("s.deleted_at IS NOT NULL" if q.deleted else "s.deleted_at IS NULL")


def _sort(query: MultiMapping[str], *, ver: Version, admin: bool) -> list[tuple[str, bool]]:
    """Nova's ``get_sort_params`` + ``process_sort_params``, default ``created_at`` descending."""
    keys, dirs = query.getall("sort_key", []), query.getall("sort_dir", [])
    for key in keys:
        if key not in vocab.SORT and key not in vocab.IGNORED_SORT:
            raise ApiError(400, f"Invalid input for query parameters sort_key. Value: {key}.")
    for d in dirs:
        if d not in ("asc", "desc"):
            raise ApiError(400, f"Invalid input for query parameters sort_dir. Value: {d}.")
    if len(dirs) > len(keys):
        raise ApiError(400, "Invalid input received: Sort direction size exceeds sort key size")
    default_dir = dirs[0] if dirs else "desc"
    pairs = [(k, dirs[i] if i < len(dirs) else default_dir) for i, k in enumerate(keys)]
    sort: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for key, direction in pairs:
        if key == "locked" and ver >= (2, 73):
            expr: str | None = "({t}.locked_by IS NOT NULL)"
        elif key in vocab.IGNORED_SORT or (key in vocab.ADMIN_SORT and not admin):
            continue
        else:
            expr = vocab.SORT[key]
        if expr is not None and expr not in seen:
            seen.add(expr)
            sort.append((expr, direction == "desc"))
    for expr in ("{t}.created_at", "{t}.id"):
        if expr not in seen:
            sort.append((expr, default_dir == "desc"))
    return sort


def marker_values(sort: list[tuple[str, bool]]) -> str:
    """The select list of the marker row's sort values (alias ``m``)."""
    return ", ".join(e.format(t="m") for e, _ in sort)


def keyset(sort: list[tuple[str, bool]], marker: list[str]) -> str:
    """The condition "row ``s`` sorts after the marker", whose sort values are ``marker`` ($n).

    The marker's values are parameters, not a join, so the condition bounds an index scan.
    """
    if len({desc for _, desc in sort}) == 1:  # one direction: a row comparison (index friendly)
        op = "<" if sort[0][1] else ">"
        left = ", ".join(e.format(t="s") for e, _ in sort)
        return f"({left}) {op} ({', '.join(marker)})"
    terms = []
    for i, (expr, desc) in enumerate(sort):
        equal = [f"{e.format(t='s')} = {m}" for (e, _), m in zip(sort[:i], marker, strict=False)]
        after = f"{expr.format(t='s')} {'<' if desc else '>'} {marker[i]}"
        terms.append("(" + " AND ".join([*equal, after]) + ")")
    return "(" + " OR ".join(terms) + ")"


def order_by(sort: list[tuple[str, bool]]) -> str:
    return ", ".join(f"{e.format(t='s')} {'DESC' if d else 'ASC'}" for e, d in sort)
