"""Glance's JSON-patch media types: parsing (pointer rules, operations, read-only and reserved
attributes, value checks) and applying to an image (add/replace/remove semantics, conflicts)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud.api.errors import ApiError
from cloud.image.patch import (
    PATCH_V2_0,
    PATCH_V2_1,
    Change,
    ImageDoc,
    apply,
    changed_attributes,
    decode_pointer,
    parse,
)


def body(*ops: Any) -> bytes:
    return json.dumps(list(ops)).encode()


def status_of(content_type: str, raw: bytes) -> int:
    with pytest.raises(ApiError) as caught:
        parse(content_type, raw)
    return caught.value.status


def doc(**props: str) -> ImageDoc:
    core = {"name": "img", "visibility": "shared", "protected": False, "min_ram": 0}
    return ImageDoc(core, dict(props), ["a"])


def test_v2_1_operations_parse_to_changes() -> None:
    changes = parse(
        PATCH_V2_1,
        body(
            {"op": "replace", "path": "/name", "value": "x"},
            {"op": "add", "path": "/k", "value": "v"},
            {"op": "remove", "path": "/old"},
            {"op": "add", "path": "/tags", "value": ["a", "b"]},
        ),
    )
    assert changes == [
        Change("replace", "name", "x"),
        Change("add", "k", "v"),
        Change("remove", "old"),
        Change("add", "tags", ["a", "b"]),
    ]


def test_v2_0_names_the_operation_by_its_key() -> None:
    assert parse(PATCH_V2_0, body({"add": "/k", "value": "v"})) == [Change("add", "k", "v", 4)]
    assert status_of(PATCH_V2_0, body({"add": "/k", "remove": "/j", "value": "v"})) == 400
    assert status_of(PATCH_V2_0, body({"value": "v"})) == 400


def test_wrong_media_type_is_415_with_accept_patch() -> None:
    with pytest.raises(ApiError) as caught:
        parse("application/json", body())
    assert caught.value.status == 415
    assert caught.value.headers["Accept-Patch"] == f"{PATCH_V2_0}, {PATCH_V2_1}"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b'{"op": "add"}',  # not a list
        b"[1]",  # not an object
        body({"path": "/name", "value": "x"}),  # no op
        body({"op": "move", "from": "/a", "path": "/name"}),  # unknown op
        body({"op": "test", "path": "/name", "value": "x"}),
        body({"op": "add", "value": "x"}),  # no path
        body({"op": "add", "path": "/name"}),  # no value
        body({"op": "add", "path": "name", "value": "x"}),  # not a pointer
        body({"op": "add", "path": "/tags/0", "value": "x"}),  # too deep
        body({"op": "add", "path": "/a//b", "value": "x"}),
        body({"op": "add", "path": "/a~2", "value": "x"}),
        body({"op": "add", "path": "/min_ram", "value": "512"}),  # wrong type
        body({"op": "add", "path": "/min_ram", "value": -1}),
        body({"op": "add", "path": "/visibility", "value": "everyone"}),
        body({"op": "add", "path": "/k", "value": 5}),  # extra properties are strings
        body({"op": "add", "path": "/tags", "value": "a"}),
        body({"op": "add", "path": "/" + "k" * 256, "value": "v"}),
    ],
)
def test_malformed_patches_are_400(raw: bytes) -> None:
    assert status_of(PATCH_V2_1, raw) == 400


@pytest.mark.parametrize(
    "path", ["/status", "/id", "/size", "/checksum", "/os_hash_value", "/created_at", "/self"]
)
def test_read_only_attributes_are_403(path: str) -> None:
    assert status_of(PATCH_V2_1, body({"op": "replace", "path": path, "value": "x"})) == 403


@pytest.mark.parametrize("path", ["/location", "/deleted", "/os_glance_import_task", "/locations"])
def test_reserved_attributes_are_403(path: str) -> None:
    assert status_of(PATCH_V2_1, body({"op": "add", "path": path, "value": "x"})) == 403


def test_pointer_escapes_decode() -> None:
    assert decode_pointer("/a~1b~0c") == ["a/b~c"]


def test_add_sets_and_replace_needs_an_existing_property() -> None:
    before = doc(k="v")
    after = apply(
        before,
        [
            Change("add", "name", "new"),
            Change("add", "k", "w"),  # add on an existing property sets it (v2.1)
            Change("add", "j", "x"),
            Change("replace", "protected", True),
        ],
    )
    assert after.core["name"] == "new" and after.core["protected"] is True
    assert after.properties == {"k": "w", "j": "x"}
    assert before.properties == {"k": "v"}  # the input is left alone
    assert changed_attributes(before, after) == ["j", "k", "name", "protected"]
    with pytest.raises(ApiError) as caught:
        apply(before, [Change("replace", "missing", "x")])
    assert caught.value.status == 409


def test_remove_drops_properties_but_never_core_attributes() -> None:
    assert apply(doc(k="v"), [Change("remove", "k")]).properties == {}
    for name, status in (("name", 403), ("missing", 409)):
        with pytest.raises(ApiError) as caught:
            apply(doc(), [Change("remove", name)])
        assert caught.value.status == status


def test_v2_0_add_of_an_existing_attribute_conflicts() -> None:
    for name in ("name", "k"):
        with pytest.raises(ApiError) as caught:
            apply(doc(k="v"), [Change("add", name, "x", 4)])
        assert caught.value.status == 409
    assert apply(doc(), [Change("add", "new", "x", 4)]).properties == {"new": "x"}


def test_tags_are_replaced_as_a_set() -> None:
    after = apply(doc(), [Change("replace", "tags", ["b", "c", "b"])])
    assert after.tags == ["b", "c"]
    assert changed_attributes(doc(), after) == ["tags"]
    assert changed_attributes(doc(), apply(doc(), [Change("add", "name", "img")])) == []
