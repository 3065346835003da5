"""The gateway's request pipeline on a toy service: ids, faults, body checks, auth, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.app import build_app
from cloud.api.context import AuthContext, Named
from cloud.api.errors import ApiError, keystone_fault, nova_fault
from cloud.api.router import ApiRequest, Router

NOW = datetime(2026, 11, 24, tzinfo=UTC)


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    size: int = 0


class ThingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thing: Thing


class Validator:
    async def validate(self, token: str) -> AuthContext:
        if token != "good":
            raise ApiError(401, "The request you have made requires authentication.")
        return AuthContext(
            token=token,
            user=Named("u1", "alice", "default", "Default"),
            methods=("password",),
            audit_ids=("a",),
            issued_at=NOW,
            expires_at=NOW + timedelta(hours=1),
        )


def make_app() -> web.Application:
    things = Router("things", "/things/v1", keystone_fault)
    computes = Router("compute", "/compute/v2.1", nova_fault)

    @things.post("/things", body=ThingRequest, status=201)
    async def create_thing(req: ApiRequest[ThingRequest]) -> dict[str, Any]:
        """Create a thing."""
        return {"thing": req.body.thing.model_dump() | {"owner": req.auth.user.id}}

    @things.get("/open", auth=False)
    async def open_door(req: ApiRequest[Any]) -> dict[str, Any]:
        return {"open": True}

    @things.get("/boom", auth=False)
    async def boom(req: ApiRequest[Any]) -> dict[str, Any]:
        raise RuntimeError("a bug")

    @computes.get("/servers/{server_id}")
    async def show_server(req: ApiRequest[Any]) -> dict[str, Any]:
        raise ApiError(404, f"Instance {req.params['server_id']} could not be found.")

    return build_app(
        [things, computes],
        Validator(),
        max_body_bytes=256 * 1024,
        identity_url=lambda r: "http://id.example/identity",
    )


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app())) as c:
        yield c


async def test_every_response_carries_a_request_id(client: TestClient[Any, Any]) -> None:
    ok = await client.get("/things/v1/open")
    missing = await client.get("/nowhere")
    assert ok.status == 200 and missing.status == 404
    ids = {ok.headers["X-Openstack-Request-Id"], missing.headers["X-Openstack-Request-Id"]}
    assert len(ids) == 2 and all(i.startswith("req-") for i in ids)


async def test_missing_token_is_401_with_www_authenticate(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/things/v1/things", json={"thing": {"name": "x"}})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Keystone uri="http://id.example/identity"'
    assert (await resp.json())["error"]["code"] == 401


async def test_valid_request_reaches_the_handler(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/things/v1/things",
        json={"thing": {"name": "x", "size": 3}},
        headers={"X-Auth-Token": "good"},
    )
    assert resp.status == 201
    assert await resp.json() == {"thing": {"name": "x", "size": 3, "owner": "u1"}}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"{not json", "application/json", 400, "invalid JSON"),
        (b"\xff\xfe{}", "application/json", 400, "not UTF-8"),
        (b"[]", "application/json", 400, "Invalid input"),
        (b'{"thing": {"name": "x", "colour": "red"}}', "application/json", 400, "colour"),
        (b'{"thing": {"name": 5}}', "application/json", 400, "thing.name"),
        (b'{"thing": {"name": "x", "size": "3"}}', "application/json", 400, "thing.size"),
        (b"", "application/json", 400, "empty"),
        (b'{"thing": {"name": "x", "size": NaN}}', "application/json", 400, "NaN"),
        (b'{"thing": {"name": "x", "size": 1e400}}', "application/json", 400, "range"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested"),
        (b'{"thing": {"name": "x"}}', "text/plain", 415, "Content-Type"),
        (b'{"thing": {"name": "' + b"x" * 300_000 + b'"}}', "application/json", 413, "larger"),
    ],
)
async def test_bad_bodies_get_keystone_faults(
    client: TestClient[Any, Any], body: bytes, content_type: str, status: int, fragment: str
) -> None:
    resp = await client.post(
        "/things/v1/things",
        data=body,
        headers={"X-Auth-Token": "good", "Content-Type": content_type},
    )
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] == status and fragment in error["message"]


async def test_faults_use_the_owning_services_format(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/compute/v2.1/servers/abc", headers={"X-Auth-Token": "good"})
    assert resp.status == 404
    assert await resp.json() == {
        "itemNotFound": {"code": 404, "message": "Instance abc could not be found."}
    }
    unknown = await client.get("/compute/v2.1/nothing-here")
    assert (await unknown.json())["itemNotFound"]["code"] == 404


async def test_a_crash_is_a_500_fault_not_a_traceback(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/things/v1/boom")
    assert resp.status == 500
    body = await resp.json()
    assert body["error"]["code"] == 500 and "a bug" not in body["error"]["message"]


async def test_wrong_method_is_405(client: TestClient[Any, Any]) -> None:
    resp = await client.delete("/things/v1/open")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == 405


async def test_openapi_lists_operations_with_their_models(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    create = doc["paths"]["/things/v1/things"]["post"]
    assert create["operationId"] == "things.create_thing" and create["summary"] == "Create a thing."
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ThingRequest"
    assert "Thing" in doc["components"]["schemas"]
    assert create["security"] == [{"token": []}]
    show = doc["paths"]["/compute/v2.1/servers/{server_id}"]["get"]
    assert show["parameters"][0] == {
        "name": "server_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert "security" not in doc["paths"]["/things/v1/open"]["get"]


async def test_nul_characters_are_refused_before_any_handler(client: TestClient[Any, Any]) -> None:
    in_query = await client.get("/things/v1/open?name=a%00b")
    in_body = await client.post(
        "/things/v1/things",
        data=b'{"thing": {"name": "a\\u0000b"}}',
        headers={"X-Auth-Token": "good", "Content-Type": "application/json"},
    )
    assert in_query.status == in_body.status == 400
    assert "NUL" in (await in_body.json())["error"]["message"]


HOOKED = web.RequestKey("hooked", str)


def make_hooked_app() -> web.Application:
    """A router with per-router hooks next to one without."""
    hooked = Router("hooked", "/hooked/v1", nova_fault)
    plain = Router("plain", "/plain", keystone_fault)

    def before(request: web.Request) -> None:
        asked = request.headers.get("X-Level", "1")
        if asked == "9":
            raise ApiError(406, "Level 9 is not supported.")
        request[HOOKED] = asked

    def after(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Level"] = request.get(HOOKED, "none")
        response.headers["Vary"] = "X-Level"

    hooked.set_hooks(before=before, after=after)

    @hooked.get("/level")
    async def level(req: ApiRequest[Any]) -> dict[str, Any]:
        return {"level": req.raw[HOOKED]}

    @hooked.post("/things", body=ThingRequest)
    async def post_thing(req: ApiRequest[ThingRequest]) -> dict[str, Any]:
        return {"ok": True}

    @plain.get("/level", auth=False)
    async def plain_level(req: ApiRequest[Any]) -> dict[str, Any]:
        return {"level": None}

    return build_app([hooked, plain], Validator())


@pytest.fixture
async def hooked_client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_hooked_app())) as c:
        yield c


async def test_before_hook_sees_the_request_and_after_hook_labels_it(
    hooked_client: TestClient[Any, Any],
) -> None:
    resp = await hooked_client.get(
        "/hooked/v1/level", headers={"X-Auth-Token": "good", "X-Level": "3"}
    )
    assert resp.status == 200 and await resp.json() == {"level": "3"}
    assert resp.headers["X-Level"] == "3" and resp.headers["Vary"] == "X-Level"
    assert resp.headers["X-Openstack-Request-Id"].startswith("req-")


async def test_before_hook_may_refuse_and_the_fault_is_labelled_too(
    hooked_client: TestClient[Any, Any],
) -> None:
    resp = await hooked_client.get(
        "/hooked/v1/level", headers={"X-Auth-Token": "good", "X-Level": "9"}
    )
    assert resp.status == 406
    assert await resp.json() == {
        "computeFault": {"code": 406, "message": "Level 9 is not supported."}
    }
    assert resp.headers["X-Level"] == "none"


async def test_before_hook_runs_after_auth_and_before_the_body(
    hooked_client: TestClient[Any, Any],
) -> None:
    resp = await hooked_client.get("/hooked/v1/level", headers={"X-Level": "9"})
    assert resp.status == 401  # the caller is checked first, as keystonemiddleware does
    resp = await hooked_client.post(
        "/hooked/v1/things", data=b"{bad", headers={"X-Auth-Token": "good", "X-Level": "9"}
    )
    assert resp.status == 406  # the version is negotiated before the body is read


async def test_after_hook_labels_unmatched_paths_under_the_prefix_only(
    hooked_client: TestClient[Any, Any],
) -> None:
    missing = await hooked_client.get("/hooked/v1/nowhere")
    assert missing.status == 404 and missing.headers["X-Level"] == "none"
    assert "itemNotFound" in await missing.json()
    wrong = await hooked_client.delete("/hooked/v1/level")
    assert wrong.status == 405 and "X-Level" in wrong.headers
    assert "X-Level" not in (await hooked_client.get("/plain/level")).headers
    assert "X-Level" not in (await hooked_client.get("/hooked/v1x")).headers
