"""Building blocks of list operations: limit/marker pagination, sort keys, SQL filters.

Lists are keyset-paginated: the page after ``marker`` is the rows sorted after the marker's row,
so a page costs the same however deep it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from multidict import MultiMapping

from cloud.api.errors import ApiError


def parse_limit(query: MultiMapping[str], *, default: int, maximum: int) -> int:
    """``limit`` as a positive int (capped at ``maximum``); 400 when it is not one."""
    raw = query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {raw!r}.") from None
    if limit < 0:
        raise ApiError(400, "limit must be >= 0.")
    return min(limit, maximum)


def next_url(base: str, query: MultiMapping[str], marker: str) -> str:
    """The same list request with ``marker`` moved to ``marker``: the next page."""
    pairs = [(k, v) for k, v in query.items() if k != "marker"]
    pairs.append(("marker", marker))
    return f"{base}?{urlencode(pairs)}"


@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool


def parse_sort(
    query: MultiMapping[str], allowed: Sequence[str], default: Sequence[str] = ("created_at",)
) -> list[SortKey]:
    """``sort=name:asc,size:desc`` or repeated ``sort_key``/``sort_dir`` (Nova, Glance style).

    Keys outside ``allowed`` are a 400; directions default to descending like Nova and Glance.
    """
    pairs: list[tuple[str, str]] = []
    if "sort" in query:
        for item in ",".join(query.getall("sort")).split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys, dirs = query.getall("sort_key", []), query.getall("sort_dir", [])
        if len(dirs) > len(keys):
            raise ApiError(400, "There are more sort_dir values than sort_key values.")
        pairs = [
            (k, dirs[i] if i < len(dirs) else (dirs[0] if dirs else "desc"))
            for i, k in enumerate(keys)
        ]
    if not pairs:
        pairs = [(k, "desc") for k in default]
    sort: list[SortKey] = []
    for key, direction in pairs:
        if key not in allowed:
            raise ApiError(400, f"Invalid sort key {key!r}; allowed: {', '.join(allowed)}.")
        if direction not in ("asc", "desc"):
            raise ApiError(400, f"Invalid sort direction {direction!r}; use asc or desc.")
        sort.append(SortKey(key, direction == "desc"))
    return sort


def order_by(sort: Sequence[SortKey], tiebreak: str = "id") -> str:
    """``ORDER BY`` clause of trusted column names (from :func:`parse_sort`) plus a tiebreak."""
    terms = [f"{s.column} {'DESC' if s.descending else 'ASC'}" for s in sort]
    if all(s.column != tiebreak for s in sort):
        last = sort[-1].descending if sort else False
        terms.append(f"{tiebreak} {'DESC' if last else 'ASC'}")
    return "ORDER BY " + ", ".join(terms)


@dataclass
class Where:
    """A conjunction of SQL conditions with numbered parameters (``$1``, ``$2``, ...)."""

    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, template: str, *values: Any) -> Where:
        """``template`` with ``{}`` placeholders, one per value: ``add("name = {}", "x")``."""
        self.conditions.append(template.format(*(self.param(v) for v in values)))
        return self

    def eq(self, column: str, value: Any) -> Where:
        if value is not None:
            self.add(f"{column} = {{}}", value)
        return self

    def sql(self) -> str:
        return (
            ("WHERE " + " AND ".join(f"({c})" for c in self.conditions)) if self.conditions else ""
        )


def parse_bool(value: str, name: str) -> bool:
    """OpenStack's lenient booleans in query strings (``true``/``1``/``yes``...)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise ApiError(400, f"{name} must be a boolean, not {value!r}.")
