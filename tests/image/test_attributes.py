"""Create-request checks of image attributes, and Glance's fault body."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.api.errors import ApiError
from cloud.image.attributes import check_create, schema_problem
from cloud.image.faults import glance_fault


def test_core_extra_and_tags_are_split() -> None:
    core, extra, tags = check_create(
        {
            "id": "4e1c2a8e-52c3-4f19-8f7c-9c3c6fa1c1d2",
            "name": "cirros",
            "disk_format": "qcow2",
            "container_format": "bare",
            "min_ram": 64,
            "visibility": "private",
            "tags": ["a", "b", "a"],
            "hw_disk_bus": "scsi",
        }
    )
    assert core["name"] == "cirros" and core["min_ram"] == 64 and "tags" not in core
    assert extra == {"hw_disk_bus": "scsi"}
    assert tags == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"status": "active"}, 403),
        ({"size": 1}, 403),
        ({"os_hash_value": "x"}, 403),
        ({"self": "x"}, 403),
        ({"file": "x"}, 403),
        ({"location": "x"}, 403),
        ({"deleted": "x"}, 403),
        ({"os_glance_importing_to_stores": "x"}, 403),
        ({"locations": []}, 403),
        ({"disk_format": "floppy"}, 400),
        ({"container_format": 1}, 400),
        ({"protected": "yes"}, 400),
        ({"min_disk": -1}, 400),
        ({"min_disk": 2**31}, 400),
        ({"id": "not-a-uuid"}, 400),
        ({"name": "n" * 256}, 400),
        ({"k": 1}, 400),
        ({"k": None}, 400),
        ({"tags": "a"}, 400),
        ({"tags": [1]}, 400),
        ({"k" * 256: "v"}, 400),
        ([], 400),
    ],
)
def test_refused_bodies(body: Any, status: int) -> None:
    with pytest.raises(ApiError) as caught:
        check_create(body)
    assert caught.value.status == status


def test_schema_problems_read_like_jsonschema() -> None:
    assert schema_problem(5, {"type": "string"}) == "5 is not of type 'string'"
    assert schema_problem(True, {"type": "integer"}) == "True is not of type 'integer'"
    assert schema_problem(None, {"type": ["null", "string"]}) is None
    assert schema_problem("x", {"enum": ["a"]}) == "'x' is not one of ['a']"


def test_faults_are_webob_json_and_401_is_keystone_s() -> None:
    assert glance_fault(ApiError(404, "No image found with ID x")) == {
        "message": "No image found with ID x<br /><br />\n\n\n",
        "code": "404 Not Found",
        "title": "Not Found",
    }
    assert glance_fault(ApiError(413, "over"))["code"] == "413 Request Entity Too Large"
    assert glance_fault(ApiError(401, "auth"))["error"]["code"] == 401
