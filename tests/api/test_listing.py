"""List helpers: limit, next links, sort parsing, SQL conditions, lenient booleans."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from multidict import MultiDict

from cloud.api.errors import ApiError
from cloud.api.listing import (
    SortKey,
    Where,
    next_url,
    order_by,
    parse_bool,
    parse_limit,
    parse_sort,
)


def q(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


def test_limit_defaults_caps_and_rejects() -> None:
    assert parse_limit(q(), default=20, maximum=100) == 20
    assert parse_limit(q(("limit", "500")), default=20, maximum=100) == 100
    assert parse_limit(q(("limit", "0")), default=20, maximum=100) == 0
    for bad in ("-1", "ten", "1.5", ""):
        with pytest.raises(ApiError) as raised:
            parse_limit(q(("limit", bad)), default=20, maximum=100)
        assert raised.value.status == 400


def test_next_url_keeps_filters_and_moves_the_marker() -> None:
    url = next_url(
        "http://h/image/v2/images", q(("status", "active"), ("marker", "a"), ("limit", "2")), "b"
    )
    parts = urlsplit(url)
    assert parts.path == "/image/v2/images"
    assert sorted(parse_qsl(parts.query)) == [("limit", "2"), ("marker", "b"), ("status", "active")]


def test_sort_both_styles_and_validation() -> None:
    allowed = ("name", "created_at", "size")
    assert parse_sort(q(("sort", "name:asc,size")), allowed) == [
        SortKey("name", False),
        SortKey("size", True),
    ]
    assert parse_sort(
        q(("sort_key", "name"), ("sort_key", "size"), ("sort_dir", "asc")), allowed
    ) == [SortKey("name", False), SortKey("size", False)]
    assert parse_sort(q(), allowed) == [SortKey("created_at", True)]
    for bad in (
        q(("sort", "password")),
        q(("sort", "name:sideways")),
        q(("sort_key", "name"), ("sort_dir", "asc"), ("sort_dir", "desc")),
    ):
        with pytest.raises(ApiError) as raised:
            parse_sort(bad, allowed)
        assert raised.value.status == 400


def test_order_by_adds_a_stable_tiebreak() -> None:
    assert order_by([SortKey("name", True)]) == "ORDER BY name DESC, id DESC"
    assert order_by([SortKey("id", False)]) == "ORDER BY id ASC"


def test_where_numbers_parameters_in_order() -> None:
    where = Where().eq("name", "x").eq("owner", None).add("size BETWEEN {} AND {}", 1, 9)
    assert where.sql() == "WHERE (name = $1) AND (size BETWEEN $2 AND $3)"
    assert where.args == ["x", 1, 9]
    assert Where().sql() == ""


def test_lenient_booleans() -> None:
    assert parse_bool("True", "enabled") and parse_bool("1", "enabled")
    assert not parse_bool("false", "enabled") and not parse_bool("no", "enabled")
    with pytest.raises(ApiError):
        parse_bool("maybe", "enabled")
