"""Keystone resources that keep attributes they do not define, and small row helpers.

Regions, services, endpoints and credentials accept attributes beside their known fields (Keystone's
``additionalProperties: true``); those are stored in the row's ``extra`` JSON and shown again on
every read. Shared by :mod:`catalog`, :mod:`catalog_endpoints` and :mod:`credentials`.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.store.conn import DbConnection

# Keys never kept as extra attributes: the API computes them.
_COMPUTED = frozenset({"id", "links"})


class OpenModel(BaseModel):
    """Known fields validated, unknown ones kept as extra attributes."""

    model_config = ConfigDict(extra="allow")

    def extras(self, *declared: str) -> dict[str, Any]:
        """The attributes to keep in ``extra``: unknown ones, plus ``declared`` fields if sent."""
        kept = {k: v for k, v in (self.model_extra or {}).items() if k not in _COMPUTED}
        kept.update({k: getattr(self, k) for k in declared if k in self.model_fields_set})
        return kept

    def require_some(self, what: str) -> None:
        """400 for an update body without a single attribute (Keystone's ``minProperties: 1``)."""
        if not self.model_fields_set and not self.model_extra:
            raise ApiError(400, f"Invalid input for field '{what}': it has no properties.")

    def require_id(self, path_id: str) -> None:
        """400 when the body names another id than the path (ids never change)."""
        given = getattr(self, "id", None) if "id" in self.model_fields_set else None
        given = (self.model_extra or {}).get("id", given)
        if given is not None and given != path_id:
            raise ApiError(400, f"Cannot change the id of {path_id!r} to {given!r}.")


def load_extra(raw: str | None) -> dict[str, Any]:
    value = json.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {}


def dump_extra(extra: dict[str, Any]) -> str:
    """``extra`` as JSON for a ``jsonb`` column, which holds no NaN or Infinity (400 for those)."""
    try:
        return json.dumps(extra, allow_nan=False)
    except ValueError:
        raise ApiError(400, "Invalid input: numbers must be finite (no NaN or Infinity).") from None


def merged_extra(row: asyncpg.Record, changes: dict[str, Any]) -> str:
    return dump_extra(load_extra(row["extra"]) | changes)


def without_links(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "links"}


async def fetch_one(conn: DbConnection, query: str, *args: Any) -> asyncpg.Record:
    """The row of an ``INSERT``/``UPDATE ... RETURNING`` that must return one."""
    row = await conn.fetchrow(query, *args)
    assert row is not None, "the statement returned no row"
    return row
