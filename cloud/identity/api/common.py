"""Helpers every identity resource module uses: the service, policy, links, times, conflicts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from cloud.api.errors import ApiError
from cloud.api.policy import PolicyDenied
from cloud.api.router import ApiRequest
from cloud.identity.api import IDENTITY, PREFIX
from cloud.identity.service import Identity


def identity(req: ApiRequest[Any]) -> Identity:
    return req.app[IDENTITY]


def _policy_target(target: Mapping[str, Any] | None, user_id: str | None) -> dict[str, Any]:
    checked: dict[str, Any] = {"target": dict(target or {})}
    if user_id is not None:  # user-owned things: the ``owner`` rule reads a top-level user_id
        checked["user_id"] = user_id
    return checked


def enforce(
    req: ApiRequest[Any],
    rule: str,
    target: Mapping[str, Any] | None = None,
    *,
    user_id: str | None = None,
) -> None:
    """403 in Keystone's words unless the policy allows ``rule`` for the caller on ``target``.

    ``user_id``: the user who owns what the call touches (the user in the URL).
    """
    try:
        identity(req).policy.enforce(rule, req.auth.creds, _policy_target(target, user_id))
    except PolicyDenied:
        raise ApiError(
            403, f"You are not authorized to perform the requested action: {rule}."
        ) from None


def allowed(
    req: ApiRequest[Any],
    rule: str,
    target: Mapping[str, Any] | None = None,
    *,
    user_id: str | None = None,
) -> bool:
    return identity(req).policy.allowed(rule, req.auth.creds, _policy_target(target, user_id))


def self_link(req: ApiRequest[Any], path: str) -> dict[str, str]:
    """``{"self": "<identity url><path>"}``: the ``links`` of a resource."""
    return {"self": f"{req.base_url()}{PREFIX}{path}"}


def collection_links(req: ApiRequest[Any]) -> dict[str, str | None]:
    """Keystone lists are not paginated: self plus null previous/next."""
    return {"self": str(req.raw.url), "previous": None, "next": None}


def iso(dt: datetime | None) -> str | None:
    """Keystone's time format: ``2026-11-24T04:45:35.000000Z``."""
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@asynccontextmanager
async def conflict_on_duplicate(what: str, detail: str) -> AsyncIterator[None]:
    """Turn a unique-constraint violation into Keystone's 409."""
    try:
        yield
    except asyncpg.UniqueViolationError:
        raise ApiError(
            409,
            f"Conflict occurred attempting to store {what} - Duplicate entry found with {detail}.",
        ) from None
    except asyncpg.ForeignKeyViolationError as exc:
        raise ApiError(400, f"Invalid reference while storing {what}: {exc.detail}") from None


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, f"Could not find {kind}: {ident}.")
