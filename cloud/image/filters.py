"""``GET /v2/images``: the query string parsed into filters, and those filters as SQL.

Glance's rules: ``limit``, ``marker``, ``member_status``, ``tag`` (repeatable, all must match) and
the sort parameters are special; every other parameter filters. ``name``, ``id``, ``status``,
``container_format`` and ``disk_format`` take ``in:a,b`` (quotes allowed around values holding a
comma) or an ``eq:`` operator; ``created_at``/``updated_at`` take ``gt:``, ``gte:``, ``lt:``,
``lte:``, ``neq:``, ``eq:`` and an ISO 8601 time; ``size_min``/``size_max`` bound the size; a
parameter that is no image column filters on the extra property of that name.

Who sees what (``visibility_sql``): an admin every image; anyone else public and community images,
their project's own, and shared images their project is a member of (by default: accepted). Without
a ``visibility`` filter community images are left out unless the caller's project owns them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import MultiDict, MultiMapping

from cloud.api.errors import ApiError
from cloud.api.listing import SortKey, Where, parse_bool, parse_sort

SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
# Sort expressions: nulls compare as Glance's defaults ('' and 0), so keyset pages stay exact.
SORT_SQL = {
    "name": "COALESCE(i.name, '')",
    "status": "i.status",
    "container_format": "COALESCE(i.container_format, '')",
    "disk_format": "COALESCE(i.disk_format, '')",
    "size": "COALESCE(i.size, 0)",
    "id": "i.id",
    "created_at": "i.created_at",
    "updated_at": "i.updated_at",
}
LIST_OPERATOR_COLUMNS = ("name", "id", "status", "container_format", "disk_format")
TIME_COLUMNS = ("created_at", "updated_at")
RANGE_COLUMNS = ("size", "virtual_size", "min_ram", "min_disk")
EQUALITY_COLUMNS = ("owner", "checksum", "os_hash_algo", "os_hash_value", "min_ram", "min_disk")
INT_COLUMNS = frozenset({"size", "virtual_size", "min_ram", "min_disk"})
_INT_BITS = {"size": 63, "virtual_size": 63, "min_ram": 31, "min_disk": 31}  # bigint, integer
VISIBILITY_FILTERS = ("community", "public", "private", "shared", "all")
MEMBER_STATUSES = ("pending", "accepted", "rejected", "all")
_SPECIAL = frozenset({"limit", "marker", "member_status", "tag", "sort", "sort_key", "sort_dir"})
_TIME_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "neq": "<>", "eq": "="}


@dataclass
class ImageQuery:
    """A parsed image list request (filters and order; limit and marker are the caller's)."""

    member_status: str = "accepted"
    visibility: str | None = None
    os_hidden: bool = False
    protected: bool | None = None
    tags: list[str] = field(default_factory=list)
    # (column, values): equality (one value) or membership (several, from ``in:``)
    columns: list[tuple[str, list[Any]]] = field(default_factory=list)
    times: list[tuple[str, str, datetime]] = field(default_factory=list)  # column, SQL op, time
    ranges: list[tuple[str, str, int]] = field(default_factory=list)  # column, '>=' or '<=', bound
    properties: dict[str, str] = field(default_factory=dict)
    sort: list[SortKey] = field(default_factory=list)


def parse_query(query: MultiMapping[str]) -> ImageQuery:
    """The filters and sort order of a list request; 400 for anything Glance refuses."""
    q = ImageQuery()
    member_status = query.get("member_status", "accepted")
    if member_status not in MEMBER_STATUSES:
        raise ApiError(400, f"Invalid status: {member_status}")
    q.member_status = member_status
    q.tags = [t.strip() for t in query.getall("tag", [])]
    q.sort = parse_sorting(query)
    for key in dict.fromkeys(query):  # each parameter once, in order; the last value wins
        if key in _SPECIAL:
            continue
        if "\x00" in key:  # PostgreSQL text cannot hold it (the gateway checks the values)
            raise ApiError(400, "NUL characters are not allowed in the query string.")
        value = query.getall(key)[-1]
        _parse_filter(q, key, value)
    return q


def _parse_filter(q: ImageQuery, key: str, value: str) -> None:
    if key == "visibility":
        if value not in VISIBILITY_FILTERS:
            raise ApiError(400, f"Invalid visibility value: {value}")
        q.visibility = value
    elif key == "changes-since":
        raise ApiError(400, 'The "changes-since" filter is no longer available on v2.')
    elif key == "os_hidden":
        q.os_hidden = _boolean(value, "os_hidden")
    elif key == "protected":
        q.protected = _boolean(value, "protected")
    elif key.endswith(("_min", "_max")) and key[:-4] in RANGE_COLUMNS:
        try:
            bound = _in_range(key[:-4], int(value))
        except ValueError:
            raise ApiError(400, "Unable to filter on a range with a non-numeric value.") from None
        q.ranges.append((key[:-4], ">=" if key.endswith("_min") else "<=", bound))
    elif key in TIME_COLUMNS:
        op, threshold = split_operator(value)
        if op not in _TIME_OPS:
            raise ApiError(400, "Unable to filter on a unknown operator.")
        q.times.append((key, _TIME_OPS[op], parse_time(key, threshold)))
    elif key in LIST_OPERATOR_COLUMNS:
        op, operand = split_operator(value)
        if op == "in":
            q.columns.append((key, split_in_values(operand)))
        elif op == "eq":
            q.columns.append((key, [operand]))
        else:
            raise ApiError(400, f"Unable to filter by unknown operator '{op}'.")
    elif key in EQUALITY_COLUMNS:
        q.columns.append((key, [_column_value(key, value)]))
    else:
        q.properties[key] = value


def _boolean(value: str, name: str) -> bool:
    try:
        return parse_bool(value, name)
    except ApiError:
        raise ApiError(
            400, f"Invalid value '{value}' for '{name}' filter. Valid values are 'true' or 'false'."
        ) from None


def _column_value(column: str, value: str) -> Any:
    if column not in INT_COLUMNS:
        return value
    try:
        return _in_range(column, int(value))
    except ValueError:
        raise ApiError(400, f"Invalid value '{value}' for '{column}' filter.") from None


def _in_range(column: str, value: int) -> int:
    """``value`` if the column can hold it (a bound beyond it is refused, not clamped)."""
    bits = _INT_BITS[column]
    if not -(2**bits) <= value < 2**bits:
        raise ValueError(f"{value} is out of range for {column}")
    return value


def parse_sorting(query: MultiMapping[str]) -> list[SortKey]:
    """``sort=k:dir,...`` or ``sort_key``/``sort_dir`` (not both); ``created_at`` and ``id`` are
    appended when missing, in the direction given (a single one) or descending."""
    if "sort" in query and ("sort_key" in query or "sort_dir" in query):
        raise ApiError(400, "Old and new sorting syntax cannot be combined")
    keys, dirs = query.getall("sort_key", []), query.getall("sort_dir", [])
    if len(dirs) > 1 and len(dirs) != len(keys):
        raise ApiError(400, "Number of sort dirs does not match the number of sort keys")
    if dirs and not keys:  # a direction alone applies to the default key
        query = MultiDict([("sort_key", "created_at"), *(("sort_dir", d) for d in dirs)])
    sort = parse_sort(query, SORT_KEYS)
    # The tiebreak keys follow the one direction given, else run descending (Glance's default).
    if "sort" in query:
        descending = sort[0].descending if len(sort) == 1 else True
    else:
        descending = dirs[0] == "desc" if len(dirs) == 1 else True
    for key in ("created_at", "id"):
        if all(s.column != key for s in sort):
            sort.append(SortKey(key, descending))
    return sort


def split_operator(expression: str) -> tuple[str, str]:
    """(operator, operand): ``gt:2020-01-01T00:00:00Z`` -> ``gt``; a bare ISO time or no colon
    -> ``eq``."""
    left, sep, right = expression.partition(":")
    if not sep:
        return "eq", expression
    if _iso_time(expression) is not None:
        return "eq", expression
    return left, right


def split_in_values(value: str) -> list[str]:
    """The values of ``in:a,"b,c",d``: commas split, double quotes protect commas."""
    _check_quotes(value)
    pattern = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)",?|([^,]+),?|,')
    return [quoted or plain for quoted, plain in pattern.findall(value)]


def _check_quotes(value: str) -> None:
    open_quote = True
    for i, char in enumerate(value):
        if char != '"' or (i and value[i - 1] == "\\"):
            continue
        if open_quote and i and value[i - 1] != ",":
            raise ApiError(
                400,
                f"Invalid filter value {value}. There is no comma before opening quotation mark.",
            )
        if not open_quote and i + 1 != len(value) and value[i + 1] != ",":
            raise ApiError(
                400,
                f"Invalid filter value {value}. There is no comma after closing quotation mark.",
            )
        open_quote = not open_quote
    if not open_quote:
        raise ApiError(400, f"Invalid filter value {value}. The quote is not closed.")


def _iso_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time(column: str, text: str) -> datetime:
    parsed = _iso_time(text)
    if parsed is None:
        raise ApiError(400, f'Bad "{column}" query filter format. Use ISO 8601 DateTime notation.')
    return parsed


def filter_sql(q: ImageQuery, where: Where) -> Where:
    """Add ``q``'s filters (not visibility) to ``where`` on table alias ``i``."""
    where.add("i.os_hidden = {}", q.os_hidden)
    if q.protected is not None:
        where.add("i.protected = {}", q.protected)
    for column, values in q.columns:
        if len(values) == 1:
            where.add(f"i.{column} = {{}}", values[0])
        else:
            where.add(f"i.{column} = ANY({{}}::{_sql_type(column)}[])", values)
    for column, op, when in q.times:
        where.add(f"i.{column} {op} {{}}", when)
    for column, op, bound in q.ranges:
        where.add(f"i.{column} {op} {{}}", bound)
    if q.tags:
        where.add("i.tags @> {}::text[]", q.tags)
    for key, value in q.properties.items():
        where.add("i.properties ->> {} = {}", key, value)
    return where


def _sql_type(column: str) -> str:
    return "bigint" if column in INT_COLUMNS else "text"


def visibility_sql(q: ImageQuery, where: Where, *, project_id: str | None, is_admin: bool) -> Where:
    """Restrict ``where`` to the images the caller may list, as Glance's database layer does."""
    where.add("i.deleted_at IS NULL AND i.status NOT IN ('killed', 'deleted')")
    if not is_admin:
        member = "m.image_id = i.id AND m.member_id = {}"
        args: list[Any] = [project_id]
        if q.member_status != "all":
            member += " AND m.status = {}"
            args.append(q.member_status)
        where.add(
            "i.visibility IN ('public', 'community') OR i.owner = {} OR (i.visibility = 'shared'"
            f" AND EXISTS (SELECT 1 FROM img_members m WHERE {member}))",
            project_id,
            *args,
        )
    if q.visibility is not None:
        if q.visibility != "all":
            where.add("i.visibility = {}", q.visibility)
    elif project_id is None:
        where.add("i.visibility <> 'community'")
    else:
        where.add("i.owner = {} OR i.visibility <> 'community'", project_id)
    return where


def keyset_sql(sort: list[SortKey], marker: dict[str, Any], where: Where) -> Where:
    """Rows strictly after ``marker`` in ``sort`` order (``sort`` ends with the unique ``id``)."""
    terms = []
    for i, key in enumerate(sort):
        parts = [f"{SORT_SQL[k.column]} = {_marker_sql(k.column, marker, where)}" for k in sort[:i]]
        op = "<" if key.descending else ">"
        parts.append(f"{SORT_SQL[key.column]} {op} {_marker_sql(key.column, marker, where)}")
        terms.append("(" + " AND ".join(parts) + ")")
    where.conditions.append(" OR ".join(terms))
    return where


def _marker_sql(column: str, marker: dict[str, Any], where: Where) -> str:
    value = marker[column]
    if value is None:
        value = 0 if column == "size" else ""
    return where.param(value)


def order_sql(sort: list[SortKey]) -> str:
    return "ORDER BY " + ", ".join(
        f"{SORT_SQL[s.column]} {'DESC' if s.descending else 'ASC'}" for s in sort
    )
