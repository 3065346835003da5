"""The image service (Glance v2 metadata API), driven like a user: the openstack CLI and
openstacksdk, plus raw HTTP for what clients never send (bad patches, wrong media types, other
projects' tokens).

The CLI runs with a terminal as stdin: ``openstack image create`` without ``--file`` reads image
data from a stdin that is not a terminal, and these tests want records without data.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.system.conftest import (
    ADMIN,
    DEMO,
    OPENSTACK,
    RunningCloud,
    create_database,
    drop_database,
    start_cloud,
    stop_cloud,
    unique,
)

PATCH = "application/openstack-images-v2.1-json-patch"
PATCH_V2_0 = "application/openstack-images-v2.0-json-patch"


def cli(cloud: RunningCloud, *args: str, as_: str = ADMIN) -> subprocess.CompletedProcess[str]:
    main, terminal = pty.openpty()
    try:
        return subprocess.run(
            [OPENSTACK, "--os-cloud", as_, *args],
            env=cloud.env(),
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        os.close(main)
        os.close(terminal)


def osc(cloud: RunningCloud, *args: str, as_: str = ADMIN) -> Any:
    """``openstack ARGS -f json`` (for show/list/create/add), parsed; else the text output."""
    wants_json = any(a in ("show", "list", "create", "add") for a in args[:3])
    proc = cli(cloud, *args, *(("-f", "json") if wants_json else ()), as_=as_)
    assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout) if wants_json else proc.stdout


def osc_fails(cloud: RunningCloud, *args: str, as_: str = ADMIN) -> str:
    proc = cli(cloud, *args, as_=as_)
    assert proc.returncode != 0, f"openstack {' '.join(args)} unexpectedly succeeded"
    return proc.stderr


@pytest.fixture(scope="module")
def tokens(cloud: RunningCloud) -> dict[str, str]:
    return {c: str(cloud.openstack("token", "issue", cloud=c)["id"]) for c in (ADMIN, DEMO)}


@pytest.fixture(scope="module")
def demo_project(cloud: RunningCloud) -> str:
    return str(cloud.openstack("project", "show", "demo")["id"])


class Api:
    """Raw HTTP to ``/image/v2`` with a project's token."""

    def __init__(self, cloud: RunningCloud, token: str) -> None:
        self.base, self.token = cloud.url + "/image/v2", token

    def __call__(
        self, method: str, path: str, body: Any = None, *, content_type: str | None = None
    ) -> requests.Response:
        headers = {"X-Auth-Token": self.token}
        data = None
        if body is not None:
            data = body if isinstance(body, str) else json.dumps(body)
            headers["Content-Type"] = content_type or "application/json"
        return requests.request(method, self.base + path, headers=headers, data=data, timeout=10)

    def create(self, **attrs: Any) -> dict[str, Any]:
        reply = self("POST", "/images", {"name": unique("img"), **attrs})
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def patch(self, image_id: str, *ops: dict[str, Any]) -> requests.Response:
        return self("PATCH", f"/images/{image_id}", list(ops), content_type=PATCH)


@pytest.fixture(scope="module")
def admin(cloud: RunningCloud, tokens: dict[str, str]) -> Api:
    return Api(cloud, tokens[ADMIN])


@pytest.fixture(scope="module")
def demo(cloud: RunningCloud, tokens: dict[str, str]) -> Api:
    return Api(cloud, tokens[DEMO])


def message(reply: requests.Response) -> str:
    """The message of a Glance fault (webob's flat JSON)."""
    body = reply.json()
    assert set(body) == {"message", "code", "title"}, body
    assert body["code"].startswith(str(reply.status_code))
    return str(body["message"])


# -- discovery, schemas -------------------------------------------------------------------------


def test_version_discovery_and_catalog(cloud: RunningCloud) -> None:
    for path, status in (("/image", 300), ("/image/", 300), ("/image/versions", 200)):
        reply = requests.get(cloud.url + path, timeout=10)
        assert reply.status_code == status
        versions = reply.json()["versions"]
        assert versions[0] == {
            "id": "v2.7",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": cloud.url + "/image/v2/"}],
        }
        assert {v["status"] for v in versions[1:]} == {"SUPPORTED"}
    endpoints = cloud.openstack("endpoint", "list", "--service", "image")
    assert {e["URL"] for e in endpoints} == {cloud.url + "/image"}


def test_schemas(admin: Api) -> None:
    image = admin("GET", "/schemas/image").json()
    assert image["name"] == "image"
    assert image["additionalProperties"] == {"type": "string"}
    assert {"name", "tags", "visibility", "os_hidden", "os_hash_value"} <= set(image["properties"])
    assert image["properties"]["status"]["readOnly"] is True
    images = admin("GET", "/schemas/images").json()
    assert images["properties"]["images"]["items"]["name"] == "image"
    member = admin("GET", "/schemas/member").json()
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    members = admin("GET", "/schemas/members").json()
    assert members["properties"]["members"]["items"]["name"] == "member"


# -- the CLI ------------------------------------------------------------------------------------


def test_create_show_and_list_with_the_cli(cloud: RunningCloud) -> None:
    name = unique("cirros")
    created = osc(
        cloud, "image", "create", "--disk-format", "qcow2", "--container-format", "bare",
        "--property", "os_distro=cirros", "--property", f"marker={name}", "--tag", "base", name,
    )  # fmt: skip
    assert created["status"] == "queued" and created["visibility"] == "shared"
    assert created["properties"]["os_distro"] == "cirros"
    assert created["tags"] == ["base"]
    shown = osc(cloud, "image", "show", name)
    assert shown["id"] == created["id"] and shown["disk_format"] == "qcow2"
    long = {i["ID"]: i for i in osc(cloud, "image", "list", "--long")}
    row = long[created["id"]]
    columns = ("Disk Format", "Container Format", "Status", "Visibility")
    assert [row[c] for c in columns] == ["qcow2", "bare", "queued", "shared"]
    assert row["Size"] is None and row["Checksum"] is None and row["Tags"] == ["base"]
    other = osc(cloud, "image", "create", "--property", "marker=other", unique("other"))
    listed = osc(cloud, "image", "list", "--property", f"marker={name}")
    assert [i["ID"] for i in listed] == [created["id"]]
    assert other["id"] not in [i["ID"] for i in listed]


def test_set_unset_protect_and_delete_with_the_cli(cloud: RunningCloud) -> None:
    image = osc(cloud, "image", "create", unique("img"))
    new_name = unique("renamed")
    osc(
        cloud, "image", "set", "--name", new_name, "--tag", "t1", "--tag", "t2",
        "--property", "hw_disk_bus=scsi", "--min-ram", "64", "--protected", image["id"],
    )  # fmt: skip
    shown = osc(cloud, "image", "show", image["id"])
    assert shown["name"] == new_name and shown["protected"] is True and shown["min_ram"] == 64
    assert sorted(shown["tags"]) == ["t1", "t2"]
    assert shown["properties"]["hw_disk_bus"] == "scsi"
    osc(cloud, "image", "unset", "--property", "hw_disk_bus", "--tag", "t1", image["id"])
    shown = osc(cloud, "image", "show", image["id"])
    assert "hw_disk_bus" not in shown["properties"] and shown["tags"] == ["t2"]
    refused = osc_fails(cloud, "image", "delete", image["id"])
    assert "is protected and cannot be deleted" in refused
    osc(cloud, "image", "set", "--unprotected", image["id"])
    osc(cloud, "image", "delete", image["id"])
    assert "No Image found" in osc_fails(cloud, "image", "show", image["id"])


def test_sharing_with_another_project(cloud: RunningCloud, demo_project: str) -> None:
    image = osc(cloud, "image", "create", unique("shared"))
    assert "No Image found" in osc_fails(cloud, "image", "show", image["id"], as_=DEMO)
    member = osc(cloud, "image", "add", "project", image["id"], demo_project)
    assert (member["member_id"], member["status"]) == (demo_project, "pending")
    # Pending: visible by id, not yet in the member's default list.
    assert osc(cloud, "image", "show", image["id"], as_=DEMO)["id"] == image["id"]
    assert image["id"] not in [i["ID"] for i in osc(cloud, "image", "list", as_=DEMO)]
    osc(cloud, "image", "set", "--accept", image["id"], as_=DEMO)
    assert image["id"] in [i["ID"] for i in osc(cloud, "image", "list", as_=DEMO)]
    members = osc(cloud, "image", "member", "list", image["id"])
    assert [(m["Member ID"], m["Status"]) for m in members] == [(demo_project, "accepted")]
    # Only the owner removes a member.
    refused = osc_fails(cloud, "image", "remove", "project", image["id"], demo_project, as_=DEMO)
    assert "delete_member" in refused
    osc(cloud, "image", "remove", "project", image["id"], demo_project)
    assert "No Image found" in osc_fails(cloud, "image", "show", image["id"], as_=DEMO)


def test_visibility_rules(cloud: RunningCloud, admin: Api, demo: Api) -> None:
    private = admin.create(visibility="private")
    assert demo("GET", f"/images/{private['id']}").status_code == 404
    assert private["id"] not in [i["id"] for i in demo("GET", "/images").json()["images"]]
    public = admin.create(visibility="public")
    assert demo("GET", f"/images/{public['id']}").status_code == 200
    # Only an admin publishes: neither on create nor by a change.
    mine = osc(cloud, "image", "create", unique("mine"), as_=DEMO)
    refused = osc_fails(cloud, "image", "set", "--public", mine["id"], as_=DEMO)
    assert "403" in refused and "publicize_image" in refused
    assert demo("POST", "/images", {"visibility": "public"}).status_code == 403
    assert (
        demo.patch(public["id"], {"op": "replace", "path": "/name", "value": "x"}).status_code
        == 403
    )
    # Community images: listed for others only when asked for.
    community = demo.create(visibility="community")
    listed = [i["id"] for i in admin("GET", "/images?visibility=community").json()["images"]]
    assert community["id"] in listed
    default = [i["id"] for i in admin("GET", "/images?limit=1000").json()["images"]]
    assert community["id"] not in default and private["id"] in default  # admins see all else
    assert demo("POST", "/images", {"owner": "someone-else"}).status_code == 403
    assert demo("POST", f"/images/{private['id']}/members", {"member": "x"}).status_code == 404


# -- raw HTTP: errors ---------------------------------------------------------------------------


def test_patch_errors(admin: Api) -> None:
    image = admin.create()
    path = f"/images/{image['id']}"
    wrong = admin("PATCH", path, [{"op": "add", "path": "/name", "value": "x"}])
    assert wrong.status_code == 415 and "json-patch" in wrong.headers["Accept-Patch"]
    cases = [
        ("[{not json", 400, "Malformed"),
        ({"op": "add"}, 400, "JSON array"),
        ([{"op": "move", "from": "/a", "path": "/name"}], 400, "Invalid operation"),
        ([{"op": "add", "path": "/tags/-", "value": "x"}], 400, "Invalid JSON pointer"),
        ([{"op": "add", "path": "/min_ram", "value": "64"}], 400, "does not match schema"),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403, "read-only"),
        ([{"op": "replace", "path": "/size", "value": 1}], 403, "read-only"),
        ([{"op": "add", "path": "/os_glance_import_task", "value": "x"}], 403, "reserved"),
        ([{"op": "remove", "path": "/name"}], 403, "may not be removed"),
        ([{"op": "replace", "path": "/missing", "value": "x"}], 409, "does not exist"),
        ([{"op": "remove", "path": "/missing"}], 409, "does not exist"),
    ]
    for body, status, words in cases:
        reply = admin("PATCH", path, body, content_type=PATCH)
        assert reply.status_code == status, (body, reply.text)
        assert words in message(reply)
    ok = admin.patch(
        image["id"],
        {"op": "add", "path": "/k", "value": "v"},
        {"op": "replace", "path": "/k", "value": "w"},
        {"op": "add", "path": "/tags", "value": ["a", "b"]},
        {"op": "replace", "path": "/os_hidden", "value": True},
    )
    assert ok.status_code == 200, ok.text
    assert (ok.json()["k"], ok.json()["tags"], ok.json()["os_hidden"]) == ("w", ["a", "b"], True)
    assert admin.patch(image["id"]).json()["updated_at"] == ok.json()["updated_at"]
    old = admin("PATCH", path, [{"add": "/k", "value": "x"}], content_type=PATCH_V2_0)
    assert old.status_code == 409 and "already present" in message(old)


def test_create_errors(admin: Api) -> None:
    image_id = str(uuid.uuid4())
    assert admin.create(id=image_id)["id"] == image_id
    duplicate = admin("POST", "/images", {"id": image_id})
    assert duplicate.status_code == 409 and "already exists" in message(duplicate)
    for body, status in (
        ({"status": "active"}, 403),
        ({"checksum": "0" * 32}, 403),
        ({"self": "/x"}, 403),
        ({"location": "file:///x"}, 403),
        ({"os_glance_x": "y"}, 403),
        ({"disk_format": "floppy"}, 400),
        ({"prop": 5}, 400),
        ({"id": "not-a-uuid"}, 400),
        ({"min_ram": -1}, 400),
        ([], 400),
        ("{oops", 400),
    ):
        reply = admin("POST", "/images", body)
        assert reply.status_code == status, (body, reply.text)
        message(reply)
    bad_type = admin("POST", "/images", {"name": "x"}, content_type="text/plain")
    assert bad_type.status_code == 415


def test_unknown_images_are_404(admin: Api) -> None:
    missing = str(uuid.uuid4())
    for method, path, body in (
        ("GET", "", None),
        ("DELETE", "", None),
        ("PUT", "/tags/x", None),
        ("GET", "/members", None),
        ("POST", "/members", {"member": "p"}),
        ("POST", "/actions/deactivate", None),
    ):
        reply = admin(method, f"/images/{missing}{path}", body)
        assert reply.status_code == 404, (method, path, reply.text)
        message(reply)
    reply = admin.patch(missing, {"op": "add", "path": "/k", "value": "v"})
    assert reply.status_code == 404 and f"No image found with ID {missing}" in message(reply)


def test_sdk_surfaces_glance_errors(cloud: RunningCloud) -> None:
    conn = cloud.sdk(DEMO)
    with pytest.raises(Exception, match="No image found with ID"):
        conn.image.get_image(str(uuid.uuid4()))
    image = conn.image.create_image(
        name=unique("sdk"), disk_format="raw", container_format="bare", tags=["x"]
    )
    assert image.status == "queued" and image.owner == conn.current_project_id
    updated = conn.image.update_image(image.id, min_disk=2, is_hidden=True, hw_rng_model="virtio")
    assert (updated.min_disk, updated.is_hidden, updated.hw_rng_model) == (2, True, "virtio")
    assert image.id not in [i.id for i in conn.image.images()]  # hidden
    assert image.id in [i.id for i in conn.image.images(is_hidden=True)]
    conn.image.delete_image(image.id)


# -- raw HTTP: lists, tags, members, actions ----------------------------------------------------


def test_list_filters_sorting_and_pages(admin: Api) -> None:
    tag = unique("batch")
    made = [
        admin.create(name=f"{tag}-{n}", tags=[tag], disk_format=fmt, flavour=str(n))
        for n, fmt in ((1, "raw"), (2, "qcow2"), (3, "raw"))
    ]

    def names(query: str) -> list[str]:
        reply = admin("GET", f"/images?tag={tag}&{query}")
        assert reply.status_code == 200, reply.text
        return [i["name"] for i in reply.json()["images"]]

    assert names("sort=name:asc") == [f"{tag}-1", f"{tag}-2", f"{tag}-3"]
    assert names("sort_key=name&sort_dir=desc") == [f"{tag}-3", f"{tag}-2", f"{tag}-1"]
    assert names("disk_format=raw&sort=name:asc") == [f"{tag}-1", f"{tag}-3"]
    assert names(f"name=in:{tag}-2,{tag}-3&sort=name:asc") == [f"{tag}-2", f"{tag}-3"]
    assert names(f"id={made[0]['id']}") == [f"{tag}-1"]
    assert names("flavour=2") == [f"{tag}-2"]
    assert names("created_at=gt:2000-01-01T00:00:00Z&sort=name:asc")[0] == f"{tag}-1"
    assert names("created_at=lt:2000-01-01T00:00:00Z") == []
    assert names("status=active") == []
    # Pages: next links relative to the service root, as Glance writes them.
    page = admin("GET", f"/images?tag={tag}&sort=name:asc&limit=2").json()
    assert page["schema"] == "/v2/schemas/images" and page["first"].startswith("/v2/images?")
    assert [i["name"] for i in page["images"]] == [f"{tag}-1", f"{tag}-2"]
    assert page["next"].startswith("/v2/images?")
    rest = admin("GET", page["next"][len("/v2") :]).json()
    assert [i["name"] for i in rest["images"]] == [f"{tag}-3"] and "next" not in rest
    for query in (
        "size_min=big",
        "visibility=everyone",
        "member_status=maybe",
        "sort_key=owner",
        "sort=name&sort_key=name",
        "marker=" + str(uuid.uuid4()),
        "created_at=gt:yesterday",
        "os_hidden=maybe",
        "limit=-1",
    ):
        reply = admin("GET", f"/images?{query}")
        assert reply.status_code == 400, (query, reply.text)


def test_image_shape(admin: Api) -> None:
    image = admin.create(disk_format="raw", container_format="bare", hw_qemu_guest_agent="yes")
    shown = admin("GET", f"/images/{image['id']}").json()
    assert shown == image
    assert shown["self"] == f"/v2/images/{image['id']}"
    assert shown["file"] == f"/v2/images/{image['id']}/file"
    assert shown["schema"] == "/v2/schemas/image"
    for key in ("size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value"):
        assert shown[key] is None
    assert (shown["min_disk"], shown["min_ram"], shown["protected"], shown["os_hidden"]) == (
        0,
        0,
        False,
        False,
    )
    assert shown["hw_qemu_guest_agent"] == "yes" and shown["tags"] == []
    assert shown["created_at"].endswith("Z") and len(shown["created_at"]) == 20


def test_tags(admin: Api) -> None:
    image = admin.create(tags=["a"])
    path = f"/images/{image['id']}"
    assert admin("PUT", path + "/tags/b").status_code == 204
    assert admin("PUT", path + "/tags/b").status_code == 204
    assert admin("GET", path).json()["tags"] == ["a", "b"]
    assert admin("DELETE", path + "/tags/a").status_code == 204
    assert admin("DELETE", path + "/tags/a").status_code == 404
    assert admin("PUT", path + "/tags/" + "x" * 256).status_code == 400
    assert admin("GET", path).json()["tags"] == ["b"]


def test_members_rules(admin: Api, demo: Api, demo_project: str) -> None:
    private = admin.create(visibility="private")
    refused = admin("POST", f"/images/{private['id']}/members", {"member": demo_project})
    assert refused.status_code == 403
    assert admin("GET", f"/images/{private['id']}/members").status_code == 403
    shared = admin.create()
    members = f"/images/{shared['id']}/members"
    assert admin("POST", members, {}).status_code == 400
    assert admin("POST", members, {"member": ""}).status_code == 400
    added = admin("POST", members, {"member": demo_project})
    assert added.status_code == 200 and added.json()["status"] == "pending"
    assert admin("POST", members, {"member": demo_project}).status_code == 409
    admin("POST", members, {"member": "another-project"})
    assert len(admin("GET", members).json()["members"]) == 2
    seen = demo("GET", members).json()
    assert [m["member_id"] for m in seen["members"]] == [demo_project]
    assert seen["schema"] == "/v2/schemas/members"
    assert demo("GET", f"{members}/another-project").status_code == 404
    assert demo("POST", members, {"member": "third"}).status_code == 403
    bad = demo("PUT", f"{members}/{demo_project}", {"status": "maybe"})
    assert bad.status_code == 400
    accepted = demo("PUT", f"{members}/{demo_project}", {"status": "accepted"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert demo("GET", f"{members}/{demo_project}").json()["status"] == "accepted"
    assert demo("DELETE", f"{members}/{demo_project}").status_code == 403
    assert admin("DELETE", f"{members}/{demo_project}").status_code == 204
    assert demo("GET", f"/images/{shared['id']}").status_code == 404
    # Only the member sets its status, not the (non-admin) owner.
    own = demo.create()
    assert demo("POST", f"/images/{own['id']}/members", {"member": "p2"}).status_code == 200
    refused = demo("PUT", f"/images/{own['id']}/members/p2", {"status": "accepted"})
    assert refused.status_code == 403 and "modify_member" in message(refused)


def test_deactivate_needs_an_active_image(admin: Api, demo: Api) -> None:
    image = admin.create()
    reply = admin("POST", f"/images/{image['id']}/actions/deactivate")
    assert reply.status_code == 403 and "status 'queued'" in message(reply)
    reply = admin("POST", f"/images/{image['id']}/actions/reactivate")
    assert reply.status_code == 403
    public = admin.create(visibility="public")
    assert demo("POST", f"/images/{public['id']}/actions/deactivate").status_code == 403


# -- needs the image data path (PUT /v2/images/{id}/file) ----------------------------------------


def _upload_available(admin: Api) -> bool:
    image = admin.create(disk_format="raw", container_format="bare")
    reply = requests.put(
        f"{admin.base}/images/{image['id']}/file",
        headers={"X-Auth-Token": admin.token, "Content-Type": "application/octet-stream"},
        data=b"probe",
        timeout=30,
    )
    return reply.status_code not in (404, 405)


def test_create_with_file_and_deactivate(cloud: RunningCloud, admin: Api, tmp_path: Path) -> None:
    """DATA PATH: ``image create --file`` uploads (POST /images, then PUT file)."""
    if not _upload_available(admin):
        pytest.skip("image upload (PUT /v2/images/{id}/file) is not implemented yet")
    data = tmp_path / "disk.raw"
    data.write_bytes(os.urandom(256 * 1024))
    image = osc(
        cloud, "image", "create", "--disk-format", "raw", "--container-format", "bare",
        "--file", str(data), unique("uploaded"),
    )  # fmt: skip
    assert image["status"] == "active" and image["size"] == 256 * 1024
    shown = admin("GET", f"/images/{image['id']}").json()
    assert shown["checksum"] == image["checksum"] and len(shown["checksum"]) == 32
    assert shown["os_hash_algo"] == "sha512" and len(shown["os_hash_value"]) == 128
    osc(cloud, "image", "set", "--deactivate", image["id"])
    assert osc(cloud, "image", "show", image["id"])["status"] == "deactivated"
    osc(cloud, "image", "set", "--activate", image["id"])
    assert osc(cloud, "image", "show", image["id"])["status"] == "active"
    disk_format = admin.patch(
        image["id"], {"op": "replace", "path": "/disk_format", "value": "qcow2"}
    )
    assert disk_format.status_code == 403
    osc(cloud, "image", "delete", image["id"])


# -- quotas (a cloud of its own) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    database = asyncio.run(create_database())
    proc, running = start_cloud(
        tmp_path_factory.mktemp("small"), database, IMAGE_QUOTA_COUNT="2", IMAGE_TAG_QUOTA="2"
    )
    try:
        yield running
    finally:
        stop_cloud(proc)
        asyncio.run(drop_database(database))
        crashes = [
            line for line in running.log_path.read_text().splitlines() if "api.unhandled" in line
        ]
        assert not crashes, crashes[:3]


def test_image_count_quota(small_cloud: RunningCloud) -> None:
    first = osc(small_cloud, "image", "create", unique("q"), as_=DEMO)
    osc(small_cloud, "image", "create", unique("q"), as_=DEMO)
    refused = osc_fails(small_cloud, "image", "create", unique("q"), as_=DEMO)
    assert "413" in refused and "image_count_total" in refused
    osc(small_cloud, "image", "create", unique("other-project"))  # the admin project's own count
    osc(small_cloud, "image", "delete", first["id"], as_=DEMO)
    osc(small_cloud, "image", "create", unique("q"), as_=DEMO)
    token = str(small_cloud.openstack("token", "issue", cloud=DEMO)["id"])
    api = Api(small_cloud, token)
    reply = api("POST", "/images", {"name": "over"})
    assert reply.status_code == 413 and "over a limit" in message(reply)
    too_many_tags = api("POST", "/images", {"tags": ["a", "b", "c"]})
    assert too_many_tags.status_code == 413 and "image tags" in message(too_many_tags)
