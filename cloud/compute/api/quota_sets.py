"""``/os-quota-sets`` and ``/os-quota-class-sets``: compute quotas as Nova serves them.

Resources follow the microversion (2.36 drops the proxied network quotas, 2.57 the personality
file ones). ``PUT`` (admin) refuses a limit below what the project already uses unless ``force``;
``DELETE`` reverts the project to the defaults (the ``default`` quota class, else Nova's).
Limits are enforced at boot by :mod:`cloud.compute.boot_policy`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies, quotas
from cloud.compute.api import router
from cloud.compute.api.flavors import enforce, service
from cloud.compute.api.microversion import version
from cloud.store.conn import DbConnection
from schemas.compute_placement import QuotaSetChanged


class QuotaSetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota_set: Any


class QuotaClassBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota_class_set: Any


def _shown(req: ApiRequest[Any], limits: dict[str, int]) -> dict[str, int]:
    return {name: limits[name] for name in quotas.resources_at(version(req))}


def _target(req: ApiRequest[Any], rule: str) -> str:
    project = req.params["project_id"]
    enforce(req, rule, {"project_id": project})
    return project


def _limit_value(name: str, value: Any) -> int:
    # Nova's schema: an integer (or a string of one) of at least -1.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(400, f"Invalid input for field/attribute {name}. Value: {value}.")
    try:
        number = int(value)
    except ValueError:
        number = -2
    if number < -1 or number > 0x7FFFFFFF:
        raise ApiError(400, f"Invalid input for field/attribute {name}. Value: {value}.")
    return number


def _parse_limits(
    req: ApiRequest[Any], body: Any, *, allow_force: bool
) -> tuple[dict[str, int], bool]:
    if not isinstance(body, dict):
        raise ApiError(400, f"Invalid input for field/attribute quota_set. Value: {body}.")
    known = set(quotas.resources_at(version(req)))
    force = False
    limits: dict[str, int] = {}
    for name, value in body.items():
        if name == "force" and allow_force:
            if not isinstance(value, bool | str) or str(value).lower() not in ("true", "false"):
                raise ApiError(400, f"Invalid input for field/attribute force. Value: {value}.")
            force = str(value).lower() == "true"
        elif name in known:
            limits[name] = _limit_value(name, value)
        else:
            raise ApiError(400, f"Additional properties are not allowed ('{name}' was unexpected)")
    return limits, force


async def _detail(conn: DbConnection, project: str, user_id: str | None) -> dict[str, Any]:
    limits = await quotas.limits_of(conn, project)
    used = await quotas.usage_of(conn, project, user_id)
    return {
        name: {"limit": limit, "in_use": used.get(name, 0), "reserved": 0}
        for name, limit in limits.items()
    }


@router.get("/os-quota-sets/{project_id}", query=("user_id",), errors=(403,))
async def show_quotas(req: ApiRequest[Any]) -> dict[str, Any]:
    """The project's limits."""
    project = _target(req, policies.QUOTAS_SHOW)
    async with service(req).store.pool.acquire() as conn:
        limits = await quotas.limits_of(conn, project)
    return {"quota_set": {"id": project, **_shown(req, limits)}}


@router.get("/os-quota-sets/{project_id}/detail", query=("user_id",), errors=(403,))
async def show_quota_detail(req: ApiRequest[Any]) -> dict[str, Any]:
    """The project's limits with what it uses (``in_use``) and ``reserved`` (always 0)."""
    project = _target(req, policies.QUOTAS_DETAIL)
    async with service(req).store.pool.acquire() as conn:
        detail = await _detail(conn, project, req.auth.user.id)
    shown = {name: detail[name] for name in quotas.resources_at(version(req))}
    return {"quota_set": {"id": project, **shown}}


@router.get("/os-quota-sets/{project_id}/defaults", errors=(403,))
async def show_quota_defaults(req: ApiRequest[Any]) -> dict[str, Any]:
    """The limits every project starts with."""
    project = _target(req, policies.QUOTAS_DEFAULTS)
    async with service(req).store.pool.acquire() as conn:
        limits = await quotas.class_limits(conn)
    return {"quota_set": {"id": project, **_shown(req, limits)}}


@router.put("/os-quota-sets/{project_id}", body=QuotaSetBody, query=("user_id",), errors=(400, 403))
async def update_quotas(req: ApiRequest[QuotaSetBody]) -> dict[str, Any]:
    """Set some of the project's limits (admin); not below its usage unless ``force``."""
    project = _target(req, policies.QUOTAS_UPDATE)
    limits, force = _parse_limits(req, req.body.quota_set, allow_force=True)
    async with service(req).write() as uow:
        await quotas.lock_project(uow.conn, project)
        if not force:
            used = await quotas.usage_of(uow.conn, project)
            for name, limit in limits.items():
                if (
                    name in ("instances", "cores", "ram", "server_groups")
                    and 0 <= limit < used[name]
                ):
                    raise ApiError(
                        400,
                        f"Quota limit {limit} for {name} must be greater than or equal to "
                        f"already used and reserved {used[name]}.",
                    )
        await quotas.set_limits(uow.conn, project, limits)
        if limits:
            await uow.emit(QuotaSetChanged(project_id=project, limits=limits))
        current = await quotas.limits_of(uow.conn, project)
    return {"quota_set": _shown(req, current)}


@router.delete("/os-quota-sets/{project_id}", status=202, query=("user_id",), errors=(403,))
async def revert_quotas(req: ApiRequest[Any]) -> web.Response:
    """Put the project back on the default limits (admin)."""
    project = _target(req, policies.QUOTAS_DELETE)
    async with service(req).write() as uow:
        await quotas.revert(uow.conn, project)
        await uow.emit(QuotaSetChanged(project_id=project, limits={}))
    return web.Response(status=202)


@router.get("/os-quota-class-sets/{class_name}", errors=(403,))
async def show_quota_class(req: ApiRequest[Any]) -> dict[str, Any]:
    """A quota class's limits (``default``: every project's defaults; admin)."""
    enforce(req, policies.QUOTA_CLASS_SHOW)
    name = req.params["class_name"]
    async with service(req).store.pool.acquire() as conn:
        limits = await quotas.class_limits(conn, name)
    return {"quota_class_set": {"id": name, **_shown(req, limits)}}


@router.put("/os-quota-class-sets/{class_name}", body=QuotaClassBody, errors=(400, 403))
async def update_quota_class(req: ApiRequest[QuotaClassBody]) -> dict[str, Any]:
    """Set a quota class's limits (admin); ``default`` changes every project's defaults."""
    enforce(req, policies.QUOTA_CLASS_UPDATE)
    name = req.params["class_name"]
    limits, _ = _parse_limits(req, req.body.quota_class_set, allow_force=False)
    async with service(req).write() as uow:
        await quotas.set_limits(uow.conn, "", limits, class_name=name)
        if limits:
            await uow.emit(QuotaSetChanged(project_id=f"class:{name}", limits=limits))
        current = await quotas.class_limits(uow.conn, name)
    return {"quota_class_set": _shown(req, current)}
