"""API errors and each service's OpenStack fault format.

Handlers raise :class:`ApiError`; the gateway renders it in the fault format of the service that
owns the route (Keystone ``{"error": {...}}``, Nova ``{"itemNotFound": {...}}``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Protocol


class ApiError(Exception):
    """An error the client caused (or may retry): rendered, never logged as a crash."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def unauthorized(message: str = "The request you have made requires authentication.") -> ApiError:
    return ApiError(401, message)


def forbidden(message: str = "You are not authorized to perform the requested action.") -> ApiError:
    return ApiError(403, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


class FaultFormat(Protocol):
    """Renders an error as one service's JSON fault body."""

    def __call__(self, error: ApiError) -> dict[str, Any]: ...


def keystone_fault(error: ApiError) -> dict[str, Any]:
    """Keystone: ``{"error": {"code": 404, "message": "...", "title": "Not Found"}}``."""
    return {"error": {"code": error.status, "message": error.message, "title": error.title}}


_NOVA_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def nova_fault(error: ApiError) -> dict[str, Any]:
    """Nova and Cinder: ``{"itemNotFound": {"code": 404, "message": "..."}}``."""
    name = _NOVA_NAMES.get(error.status, "computeFault")
    return {name: {"code": error.status, "message": error.message}}
