"""A thin router of our own: operations with their models, policy hook and OpenAPI metadata.

Each service builds one :class:`Router` (its path prefix and fault format) and registers operations:

    router = Router("identity", "/identity/v3", keystone_fault)

    @router.post("/regions", body=RegionCreate, status=201)
    async def create_region(req: ApiRequest[RegionCreate]) -> dict[str, Any]:
        ...
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel

from cloud.api.context import AuthContext
from cloud.api.errors import ApiError, FaultFormat

B = TypeVar("B")
Reply = web.StreamResponse | Mapping[str, Any] | BaseModel | None
Handler = Callable[["ApiRequest[Any]"], Awaitable[Reply]]
# Per-router hooks (see :meth:`Router.set_hooks`).
BeforeHook = Callable[[web.Request], None]
AfterHook = Callable[[web.Request, web.StreamResponse], None]


class ApiRequest(Generic[B]):
    """What a handler sees: the parsed body, path and query parameters, the caller, the app."""

    __slots__ = ("_auth", "body", "operation", "raw")

    def __init__(
        self, raw: web.Request, body: B, operation: Operation, auth: AuthContext | None
    ) -> None:
        self.raw, self.body, self.operation, self._auth = raw, body, operation, auth

    @property
    def auth(self) -> AuthContext:
        """The caller. Only operations registered with ``auth=False`` run without one."""
        if self._auth is None:
            raise ApiError(401, "The request you have made requires authentication.")
        return self._auth

    @property
    def maybe_auth(self) -> AuthContext | None:
        return self._auth

    @property
    def params(self) -> Mapping[str, str]:
        return self.raw.match_info

    @property
    def query(self) -> MultiMapping[str]:
        return self.raw.query

    @property
    def app(self) -> web.Application:
        return self.raw.app

    @property
    def request_id(self) -> str:
        return self.raw.get(REQUEST_ID) or ""

    def base_url(self) -> str:
        """Scheme and authority the client used (``http://host:port``)."""
        return f"{self.raw.scheme}://{self.raw.host}"

    def service_url(self) -> str:
        """The owning service's root as the client reaches it, e.g. ``http://h:p/identity/v3``."""
        return self.base_url() + self.operation.router.prefix

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` under the service root."""
        return self.service_url() + path


@dataclass(frozen=True)
class QueryParam:
    """A documented query parameter (for the OpenAPI document and fuzzing)."""

    name: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""


@dataclass
class Operation:
    router: Router
    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None
    status: int
    auth: bool
    query: tuple[QueryParam, ...]
    content_types: tuple[str, ...]
    errors: tuple[int, ...]

    @property
    def full_path(self) -> str:
        return self.router.prefix + self.path

    @property
    def operation_id(self) -> str:
        return f"{self.router.service}.{self.handler.__name__}"

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.handler) or self.handler.__name__.replace("_", " ")
        return doc.splitlines()[0]


# What the pipeline (cloud/api/app.py) stores on each aiohttp request.
REQUEST_ID = web.RequestKey("request_id", str)
OPERATION = web.RequestKey("operation", Operation)
AUTH = web.RequestKey("auth", AuthContext)


class Router:
    """One service's operations under one path prefix, rendered errors in one fault format."""

    def __init__(self, service: str, prefix: str, fault: FaultFormat) -> None:
        self.service, self.prefix, self.fault = service, prefix.rstrip("/"), fault
        self.operations: list[Operation] = []
        self.before: BeforeHook | None = None
        self.after: AfterHook | None = None

    def set_hooks(
        self, *, before: BeforeHook | None = None, after: AfterHook | None = None
    ) -> None:
        """Service-wide request/response hooks (e.g. Nova's microversions).

        ``before(request)`` runs for each of this router's operations once the caller is
        authenticated and before the body is parsed; it may raise :class:`ApiError` or store
        state on the request. ``after(request, response)`` runs for every response of this
        router, errors and unmatched paths under its prefix included, to add headers.
        """
        self.before, self.after = before, after

    def route(
        self,
        method: str,
        path: str,
        *,
        body: type[BaseModel] | None = None,
        status: int = 200,
        auth: bool = True,
        query: tuple[QueryParam | str, ...] = (),
        content_types: tuple[str, ...] = ("application/json",),
        errors: tuple[int, ...] = (),
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    router=self,
                    method=method,
                    path=path,
                    handler=handler,
                    body=body,
                    status=status,
                    auth=auth,
                    query=tuple(q if isinstance(q, QueryParam) else QueryParam(q) for q in query),
                    content_types=content_types,
                    errors=errors,
                )
            )
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def head(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("HEAD", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)
