"""Image list query parsing (Glance's filters, operators and sorting) and the SQL it becomes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import MultiDict

from cloud.api.errors import ApiError
from cloud.api.listing import SortKey, Where
from cloud.image.filters import (
    filter_sql,
    keyset_sql,
    order_sql,
    parse_query,
    split_in_values,
    split_operator,
    visibility_sql,
)


def q(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


def bad(*pairs: tuple[str, str]) -> str:
    with pytest.raises(ApiError) as caught:
        parse_query(q(*pairs))
    assert caught.value.status == 400
    return caught.value.message


def test_defaults() -> None:
    parsed = parse_query(q())
    assert parsed.member_status == "accepted" and parsed.visibility is None
    assert parsed.os_hidden is False and parsed.protected is None
    assert parsed.sort == [SortKey("created_at", True), SortKey("id", True)]


def test_column_filters_take_in_and_eq_operators() -> None:
    parsed = parse_query(
        q(("name", 'in:a,"b,c",d'), ("status", "queued"), ("id", "eq:x"), ("owner", "p"))
    )
    assert parsed.columns == [
        ("name", ["a", "b,c", "d"]),
        ("status", ["queued"]),
        ("id", ["x"]),
        ("owner", ["p"]),
    ]
    assert "unknown operator 'foo'" in bad(("name", "foo:bar"))


def test_in_values_and_quotes() -> None:
    assert split_in_values("a,b") == ["a", "b"]
    assert split_in_values('"a,b",c') == ["a,b", "c"]
    for value in ('"a', 'x"a"', '"a"x'):
        with pytest.raises(ApiError):
            split_in_values(value)


def test_time_filters() -> None:
    parsed = parse_query(
        q(("created_at", "gt:2020-01-02T03:04:05Z"), ("updated_at", "2020-01-02T03:04:05"))
    )
    when = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed.times == [("created_at", ">", when), ("updated_at", "=", when)]
    assert split_operator("2020-01-02T03:04:05+01:00") == ("eq", "2020-01-02T03:04:05+01:00")
    assert "ISO 8601" in bad(("created_at", "gt:yesterday"))
    assert "unknown operator" in bad(("updated_at", "after:2020-01-01T00:00:00Z"))


def test_ranges_booleans_tags_and_properties() -> None:
    parsed = parse_query(
        q(
            ("size_min", "10"),
            ("size_max", "20"),
            ("protected", "true"),
            ("os_hidden", "True"),
            ("tag", "a"),
            ("tag", "b"),
            ("hw_disk_bus", "scsi"),
        )
    )
    assert parsed.ranges == [("size", ">=", 10), ("size", "<=", 20)]
    assert parsed.protected is True and parsed.os_hidden is True
    assert parsed.tags == ["a", "b"]
    assert parsed.properties == {"hw_disk_bus": "scsi"}
    assert "non-numeric" in bad(("size_min", "big"))
    assert "os_hidden" in bad(("os_hidden", "maybe"))


def test_special_values_are_checked() -> None:
    assert "visibility" in bad(("visibility", "everyone"))
    assert "Invalid status" in bad(("member_status", "maybe"))
    assert "changes-since" in bad(("changes-since", "2020-01-01"))
    assert parse_query(q(("visibility", "all"), ("member_status", "all"))).visibility == "all"


def test_sorting_both_syntaxes() -> None:
    assert parse_query(q(("sort", "name:asc,size"))).sort == [
        SortKey("name", False),
        SortKey("size", True),
        SortKey("created_at", True),
        SortKey("id", True),
    ]
    # One direction applies to every key, the appended ones too.
    assert parse_query(q(("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc"))).sort == [
        SortKey("name", False),
        SortKey("size", False),
        SortKey("created_at", False),
        SortKey("id", False),
    ]
    assert parse_query(q(("sort_dir", "asc"))).sort == [
        SortKey("created_at", False),
        SortKey("id", False),
    ]
    assert "combined" in bad(("sort", "name"), ("sort_key", "name"))
    assert "does not match" in bad(
        ("sort_key", "name"),
        ("sort_key", "size"),
        ("sort_key", "id"),
        ("sort_dir", "asc"),
        ("sort_dir", "desc"),
    )
    bad(("sort_key", "owner"))
    bad(("sort", "name:sideways"))


def test_filters_become_sql() -> None:
    parsed = parse_query(
        q(("name", "in:a,b"), ("tag", "t"), ("k", "v"), ("size_max", "5"), ("protected", "false"))
    )
    where = filter_sql(parsed, Where())
    sql = where.sql()
    assert "i.name = ANY($3::text[])" in sql
    assert "i.tags @> $5::text[]" in sql
    assert "i.properties ->> $6 = $7" in sql
    assert where.args == [False, False, ["a", "b"], 5, ["t"], "k", "v"]


def test_visibility_of_a_user_and_an_admin() -> None:
    user = visibility_sql(parse_query(q()), Where(), project_id="p", is_admin=False)
    assert "EXISTS (SELECT 1 FROM img_members m" in user.sql()
    assert user.args == ["p", "p", "accepted", "p"]
    anyone = visibility_sql(
        parse_query(q(("member_status", "all"), ("visibility", "all"))),
        Where(),
        project_id="p",
        is_admin=False,
    )
    assert "m.status" not in anyone.sql() and "<> 'community'" not in anyone.sql()
    admin = visibility_sql(
        parse_query(q(("visibility", "shared"))), Where(), project_id="p", is_admin=True
    )
    assert "img_members" not in admin.sql() and admin.args == ["shared"]


def test_keyset_follows_the_sort_order() -> None:
    sort = [SortKey("name", False), SortKey("id", True)]
    where = keyset_sql(sort, {"name": None, "id": "m"}, Where())
    assert where.sql() == (
        "WHERE ((COALESCE(i.name, '') > $1) OR (COALESCE(i.name, '') = $2 AND i.id < $3))"
    )
    assert where.args == ["", "", "m"]
    assert order_sql(sort) == "ORDER BY COALESCE(i.name, '') ASC, i.id DESC"
