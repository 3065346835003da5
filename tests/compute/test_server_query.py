"""The servers list query parser: Nova's filters, their microversions and who may use them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import MultiDict

from cloud.api.errors import ApiError
from cloud.compute.api import server_store
from cloud.compute.api.server_query import ServerQuery, keyset, marker_values, order_by, parse
from cloud.store.db import Store
from schemas.compute import FlavorSpec

LATEST = (2, 92)


def q(
    pairs: list[tuple[str, str]], *, ver: tuple[int, int] = LATEST, admin: bool = False
) -> ServerQuery:
    return parse(MultiDict(pairs), ver=ver, admin=admin, project_id="p1")


def status_of(call: object) -> int:
    with pytest.raises(ApiError) as caught:
        call()  # type: ignore[operator]
    return caught.value.status


def test_default_is_the_callers_live_servers_newest_first() -> None:
    got = q([])
    assert got.conditions == ["s.project_id = $1", "s.deleted_at IS NULL"]
    assert got.args == ["p1"]
    assert order_by(got.sort) == "s.created_at DESC, s.id DESC"
    assert got.limit == 1000 and got.marker is None and not got.nothing


def test_limit_must_be_a_non_negative_integer() -> None:
    assert q([("limit", "5")]).limit == 5
    assert q([("limit", "5000")]).limit == 1000
    assert status_of(lambda: q([("limit", "-1")])) == 400
    assert status_of(lambda: q([("limit", "ten")])) == 400


def test_changes_since_includes_deleted_servers_and_rejects_garbage() -> None:
    got = q([("changes-since", "2026-01-02T03:04:05Z")])
    assert "s.deleted_at IS NULL" not in got.conditions
    assert datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) in got.args
    naive = q([("changes-since", "2026-01-02T03:04:05")])
    assert datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) in naive.args
    assert status_of(lambda: q([("changes-since", "yesterday")])) == 400
    assert (
        status_of(lambda: q([("changes-since", "2026-02-01"), ("changes-before", "2026-01-01")]))
        == 400
    )


def test_changes_before_exists_from_2_66() -> None:
    assert not any(
        "updated_at" in c for c in q([("changes-before", "2026-01-01")], ver=(2, 65)).conditions
    )
    assert any(
        "updated_at <=" in c for c in q([("changes-before", "2026-01-01")], ver=(2, 66)).conditions
    )


def test_admin_only_filters_are_ignored_for_members() -> None:
    member = q([("host", "h1"), ("deleted", "true")], ver=(2, 60))
    assert not any("host" in c for c in member.conditions)
    assert "s.deleted_at IS NULL" in member.conditions
    admin = q([("host", "h1"), ("deleted", "true")], ver=(2, 60), admin=True)
    assert "s.host = $2" in admin.conditions and "h1" in admin.args
    assert "s.deleted_at IS NOT NULL" in admin.conditions


def test_members_get_more_filters_from_2_83() -> None:
    assert not any("key_name" in c for c in q([("key_name", "k")], ver=(2, 82)).conditions)
    assert any("key_name" in c for c in q([("key_name", "k")], ver=(2, 83)).conditions)


def test_all_tenants_is_for_admins() -> None:
    assert status_of(lambda: q([("all_tenants", "1")])) == 403
    everyone = q([("all_tenants", "")], admin=True)
    assert not any("project_id" in c for c in everyone.conditions)
    one = q([("all_tenants", "true"), ("project_id", "p2")], admin=True)
    assert one.args[0] == "p2" and one.project_id == "p2"
    assert q([("all_tenants", "0")], admin=True).project_id == "p1"
    assert status_of(lambda: q([("all_tenants", "maybe")], admin=True)) == 400


def test_unknown_parameters_are_a_400_from_2_75() -> None:
    assert q([("bogus", "1")], ver=(2, 74)).conditions == q([]).conditions
    assert status_of(lambda: q([("bogus", "1")], ver=(2, 75))) == 400


def test_tag_filters_from_2_26() -> None:
    got = q([("tags", "a,b"), ("tags-any", "c"), ("not-tags", "d"), ("not-tags-any", "e,f")])
    assert "s.tags @> $2::text[]" in got.conditions and ["a", "b"] in got.args
    assert "s.tags && $3::text[]" in got.conditions
    assert "NOT (s.tags @> $4::text[])" in got.conditions
    assert "NOT (s.tags && $5::text[])" in got.conditions and ["e", "f"] in got.args
    assert not any("tags" in c for c in q([("tags", "a")], ver=(2, 25)).conditions)


def test_locked_filter_from_2_73() -> None:
    assert "s.locked_by IS NOT NULL" in q([("locked", "true")]).conditions
    assert "s.locked_by IS NULL" in q([("locked", "False")]).conditions
    assert status_of(lambda: q([("locked", "sure")])) == 400
    assert not any("locked" in c for c in q([("locked", "true")], ver=(2, 72)).conditions)


def test_ip_filters_match_nothing() -> None:
    assert q([("ip", "10.0.0.1")]).nothing
    assert q([("ip6", "::1")]).nothing


def test_status_values() -> None:
    got = q([("status", "active"), ("status", "ERROR")])
    assert ["ACTIVE", "ERROR"] in got.args
    assert status_of(lambda: q([("status", "SLEEPING")])) == 400
    assert q([("status", "SLEEPING")], ver=(2, 37)).nothing


def test_exact_and_integer_filters() -> None:
    got = q([("reservation_id", "r-1"), ("image", "http://x/images/img1"), ("flavor", "1")])
    assert {"r-1", "img1", "1"} <= set(got.args)
    assert status_of(lambda: q([("launch_index", "x")], admin=True)) == 400


def test_sort_keys_and_directions() -> None:
    got = q([("sort_key", "display_name"), ("sort_dir", "asc"), ("sort_key", "vm_state")])
    assert order_by(got.sort) == "s.name ASC, s.vm_state ASC, s.created_at ASC, s.id ASC"
    assert status_of(lambda: q([("sort_key", "bogus")])) == 400
    assert status_of(lambda: q([("sort_key", "uuid"), ("sort_dir", "up")])) == 400
    assert status_of(lambda: q([("sort_dir", "asc")])) == 400  # more dirs than keys
    # Ignored keys and admin-only keys (for members) are dropped.
    assert order_by(q([("sort_key", "vcpus")]).sort) == "s.created_at DESC, s.id DESC"
    assert "host" not in order_by(q([("sort_key", "host")]).sort)
    assert "host" in order_by(q([("sort_key", "host")], admin=True).sort)


def test_keyset_condition() -> None:
    same = [("{t}.created_at", True), ("{t}.id", True)]
    assert keyset(same, ["$3", "$4"]) == "(s.created_at, s.id) < ($3, $4)"
    mixed = [("{t}.name", False), ("{t}.id", True)]
    assert keyset(mixed, ["$1", "$2"]) == "((s.name > $1) OR (s.name = $1 AND s.id < $2))"
    assert marker_values(mixed) == "m.name, m.id"


# -- against PostgreSQL: the SQL the parser builds, run by server_store.page ----------------------

TINY = FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)


async def _boot(store: Store, name: str, project: str = "p1", tags: list[str] | None = None) -> str:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": name,
        "project_id": project,
        "user_id": "u1",
        "image_ref": "img",
        "metadata": {},
        "key_name": None,
        "user_data": None,
        "availability_zone": None,
        "idempotency_key": None,
        "tags": tags or [],
    }
    async with store.unit(source="test") as uow:
        row = await server_store.insert(uow, values, TINY)
    return str(row["id"])


async def _names(store: Store, pairs: list[tuple[str, str]], **kw: Any) -> list[str]:
    async with store.pool.acquire() as conn:
        rows = await server_store.page(conn, q(pairs, **kw))
    assert rows is not None
    return [r["name"] for r in rows]


async def test_pages_filters_and_sorts_in_sql(store: Store) -> None:
    for name, tags in (("b", ["x"]), ("a", ["x", "y"]), ("c", []), ("d", ["y"])):
        await _boot(store, name, tags=tags)
    await _boot(store, "other", project="p2")
    assert await _names(store, []) == ["d", "c", "a", "b"]  # newest first
    assert await _names(store, [("sort_key", "display_name"), ("sort_dir", "asc")]) == [
        "a", "b", "c", "d",
    ]  # fmt: skip
    assert await _names(store, [("tags", "x,y")]) == ["a"]
    assert await _names(store, [("tags-any", "x,y")]) == ["d", "a", "b"]
    assert await _names(store, [("not-tags-any", "x")]) == ["d", "c"]
    assert await _names(store, [("name", "^[ab]$"), ("limit", "1")]) == ["a"]
    # Keyset pages in a mixed order cover every server once.
    order = [("sort_key", "image_ref"), ("sort_dir", "asc"), ("sort_key", "display_name"),
             ("sort_dir", "desc"), ("limit", "1")]  # fmt: skip
    seen: list[str] = []
    async with store.pool.acquire() as conn:
        marker: list[tuple[str, str]] = []
        while True:
            rows = await server_store.page(conn, q(order + marker))
            assert rows is not None
            if not rows:
                break
            seen.append(rows[0]["name"])
            marker = [("marker", rows[0]["id"])]
        missing = await server_store.page(conn, q([("marker", str(uuid.uuid4()))]))
    assert seen == ["d", "c", "b", "a"]
    assert missing is None


async def test_changes_since_shows_deleted_servers(store: Store) -> None:
    gone = await _boot(store, "gone")
    await _boot(store, "kept")
    await store.pool.execute(
        "UPDATE cmp_instances SET deleted_at = now(), status = 'DELETED' WHERE id = $1", gone
    )
    assert await _names(store, []) == ["kept"]
    window = [("changes-since", "2000-01-01T00:00:00Z")]
    assert sorted(await _names(store, window)) == ["gone", "kept"]
    assert await _names(store, [("deleted", "true")], admin=True) == ["gone"]
    assert await _names(store, [("changes-before", "2000-01-01T00:00:00Z")]) == []


async def test_the_default_page_is_an_index_scan(store: Store) -> None:
    """The detail list must stay one indexed query (the benchmark lists 1,000 of 10,000)."""
    for query, admin in (([], False), ([("all_tenants", "1")], True)):
        parsed = q(query, admin=admin)
        sql = (
            f"EXPLAIN SELECT * FROM cmp_instances s WHERE {' AND '.join(parsed.conditions)}"
            f" ORDER BY {order_by(parsed.sort)} LIMIT 1000"
        )
        async with store.pool.acquire() as conn:
            await conn.execute("SET enable_seqscan = off")  # a tiny table favours a seq scan
            plan = "\n".join(r[0] for r in await conn.fetch(sql, *parsed.args))
        assert "Index Scan" in plan and "Sort" not in plan, plan
