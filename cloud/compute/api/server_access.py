"""Who may reach which server: the checks every servers-API module shares."""

from __future__ import annotations

from typing import Any

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest


def is_admin(req: ApiRequest[Any]) -> bool:
    return req.auth.has_role("admin")


def project_of(req: ApiRequest[Any]) -> str:
    """The caller's project; compute needs a project-scoped token."""
    project = req.auth.project_id
    if project is None:
        raise ApiError(403, "Compute requests need a project-scoped token.")
    return project


def scope_of(req: ApiRequest[Any]) -> str | None:
    """Whose servers a show, action or delete may reach: admins any project's, members their own."""
    return None if is_admin(req) else project_of(req)


def not_found(server_id: str) -> ApiError:
    return ApiError(404, f"Instance {server_id} could not be found.")
