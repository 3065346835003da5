"""The gateway's aiohttp application: every service's routers behind one port.

Per request: a request id, the caller's token validated (operations marked ``auth=True``), the
JSON body parsed and validated, the handler run, errors rendered in the owning service's fault
format, and one access-log line.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler as HandlerType
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError

from cloud.api.context import AuthContext, TokenValidator
from cloud.api.errors import ApiError, FaultFormat, keystone_fault
from cloud.api.openapi import build_openapi
from cloud.api.router import AUTH, OPERATION, REQUEST_ID, ApiRequest, Operation, Reply, Router

log = structlog.get_logger("aiostack.api")

TOKEN_VALIDATOR = web.AppKey("token_validator", TokenValidator)
ROUTERS = web.AppKey("routers", Sequence[Router])
REQUEST_ID_HEADER = "X-Openstack-Request-Id"
DEFAULT_MAX_BODY = 1024 * 1024


def build_app(
    routers: Sequence[Router],
    validator: TokenValidator,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    identity_url: Callable[[web.Request], str] | None = None,
) -> web.Application:
    """One application serving ``routers``; ``validator`` checks ``X-Auth-Token``."""
    app = web.Application(
        client_max_size=max_body_bytes, middlewares=[_middleware(routers, identity_url)]
    )
    app[TOKEN_VALIDATOR] = validator
    app[ROUTERS] = list(routers)
    for router in routers:
        for op in router.operations:
            app.router.add_route(op.method, op.full_path or "/", _endpoint(op))
    app.router.add_get("/openapi.json", _openapi)
    return app


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(request.app[ROUTERS], base_url=_base_url(request)))


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        request[OPERATION] = op
        # PostgreSQL text cannot hold NUL: refuse it here rather than fail in every service.
        if "\x00" in request.path:
            raise ApiError(404, "The resource could not be found.")  # no id contains NUL
        if any("\x00" in v for v in request.query.values()):
            raise ApiError(400, "NUL characters are not allowed in the query string.")
        auth = await _authenticate(request) if op.auth else None
        if auth is not None:
            request[AUTH] = auth
        if op.router.before is not None:
            op.router.before(request)
        body = await _parse_body(request, op) if op.body is not None else None
        reply = await op.handler(ApiRequest(request, body, op, auth))
        return _respond(reply, op.status)

    endpoint.__name__ = op.handler.__name__
    return endpoint


async def _authenticate(request: web.Request) -> AuthContext:
    token = request.headers.get("X-Auth-Token")
    if not token:
        raise ApiError(401, "The request you have made requires authentication.")
    return await request.app[TOKEN_VALIDATOR].validate(token)


async def _parse_body(request: web.Request, op: Operation) -> BaseModel:
    assert op.body is not None
    raw = await request.read()
    if not raw:
        raise ApiError(400, "The request body is empty; a JSON object is required.")
    if request.content_type not in op.content_types:
        raise ApiError(
            415,
            f"Content-Type must be one of {', '.join(op.content_types)}, not {request.content_type}.",
        )
    try:
        text = raw.decode("utf-8")
        json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise ApiError(400, "Malformed request body: it is not UTF-8.") from None
    except ValueError as exc:
        raise ApiError(400, f"Malformed request body: invalid JSON ({exc}).") from None
    except RecursionError:
        raise ApiError(400, "Malformed request body: JSON nested too deeply.") from None
    if "\\u0000" in text:
        raise ApiError(400, "NUL characters are not allowed in the request body.")
    try:
        # Strict: JSON types must match (no "3" for 3), as Keystone's and Nova's schemas demand.
        return op.body.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ApiError(400, validation_message(exc)) from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"{literal} is out of range")
    return value


def validation_message(exc: ValidationError) -> str:
    """One readable line per problem, naming the field like Keystone does."""
    problems = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(f"Invalid input for field '{where}': {err['msg']}.")
    return " ".join(problems[:5])


def _respond(reply: Reply, status: int) -> web.StreamResponse:
    if isinstance(reply, web.StreamResponse):
        return reply
    if reply is None:
        return web.Response(status=status)
    data: Any = reply.model_dump(mode="json") if isinstance(reply, BaseModel) else reply
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


def _owner(request: web.Request, routers: Sequence[Router]) -> Router | None:
    """The router serving ``request``: its operation's, else the longest matching prefix."""
    op = request.get(OPERATION)
    if op is not None:
        router: Router = op.router
        return router
    owners = [r for r in routers if r.prefix and _under(request.path, r.prefix)]
    return max(owners, key=lambda r: len(r.prefix)) if owners else None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _fault_for(request: web.Request, routers: Sequence[Router]) -> FaultFormat:
    owner = _owner(request, routers)
    return owner.fault if owner is not None else keystone_fault


def _middleware(
    routers: Sequence[Router], identity_url: Callable[[web.Request], str] | None
) -> Middleware:
    @web.middleware
    async def gateway(request: web.Request, handler: HandlerType) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request[REQUEST_ID] = f"req-{uuid.uuid4()}"
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as exc:
            response = _render(request, exc, routers, identity_url)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _render(
                request, ApiError(exc.status, _http_message(exc)), routers, identity_url
            )
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("api.unhandled", request_id=request_id, path=request.path)
            crash = ApiError(500, "An unexpected error prevented the server from fulfilling it.")
            response = _render(request, crash, routers, identity_url)
        response.headers[REQUEST_ID_HEADER] = request_id
        owner = _owner(request, routers)
        if owner is not None and owner.after is not None:
            owner.after(request, response)
        _access_log(request, response, started)
        return response

    return gateway


def _render(
    request: web.Request,
    error: ApiError,
    routers: Sequence[Router],
    identity_url: Callable[[web.Request], str] | None,
) -> web.Response:
    body = _fault_for(request, routers)(error)
    response = web.json_response(body, status=error.status, headers=error.headers, dumps=_dumps)
    if error.status == 401 and identity_url is not None:
        response.headers["WWW-Authenticate"] = f'Keystone uri="{identity_url(request)}"'
    return response


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "The resource could not be found."
    if exc.status == 405:
        method = exc.method if isinstance(exc, web.HTTPMethodNotAllowed) else "used"
        return f"The method {method} is not allowed for this resource."
    if exc.status == 413:
        return "The request body is larger than the server accepts."
    return exc.reason


def _access_log(request: web.Request, response: web.StreamResponse, started: float) -> None:
    auth = request.get(AUTH)
    log.info(
        "api.request",
        request_id=request[REQUEST_ID],
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        user_id=auth.user.id if auth else None,
        project_id=auth.project_id if auth else None,
        remote=request.remote,
    )
