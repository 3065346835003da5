"""Actions ``resize``, ``confirmResize`` and ``revertResize``.

A resize first finds a host for the new flavor (the scheduler's filters and weighers over the
hosts' current usage) and claims it there in ``cmp_move_claims``, beside the instance's own claim:
both are held until the resize is confirmed (the move claim becomes the instance's claim, the old
one is given back) or reverted (the move claim is given back). No host fits: 400, as Nova's
synchronous scheduling answers. The host then resizes (status RESIZE, then VERIFY_RESIZE).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import quotas
from cloud.compute.api import COMPUTE
from cloud.compute.api.server_access import project_of, scope_of
from cloud.compute.api.server_actions import ServerAction, action
from cloud.compute.api.server_lifecycle import (
    Caller,
    begin,
    check_state,
    deadline_for,
    lock_server,
)
from cloud.compute.api.server_store import find_flavor
from cloud.conductor import states
from cloud.scheduler.actor import load_hosts
from cloud.scheduler.filters import Request, choose
from cloud.store.writes import UnitOfWork
from schemas.compute import FlavorSpec


class ResizeBody(BaseModel):
    """Nova's resize schema: a flavor reference and, optionally, the disk config."""

    model_config = ConfigDict(extra="forbid")

    flavorRef: StrictStr | StrictInt  # Nova's field name; a boolean is no flavor
    disk_config: str | None = Field(
        default=None, alias="OS-DCF:diskConfig", pattern="^(AUTO|MANUAL)$"
    )


def parse_resize(body: Any) -> str:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid input for field/attribute resize: an object is required.")
    try:
        parsed = ResizeBody.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "resize"
        raise ApiError(400, f"Invalid input for field/attribute {field}. {first['msg']}") from None
    flavor_ref = str(parsed.flavorRef).strip()
    if not flavor_ref:
        raise ApiError(400, "Invalid input for field/attribute flavorRef.")
    return flavor_ref


def check_new_flavor(old: FlavorSpec, new: FlavorSpec) -> None:
    """Nova's API-side refusals (400)."""
    if new.id == old.id:
        raise ApiError(400, "When resizing, instances must change flavor!")
    if new.disk_gb < old.disk_gb or new.ephemeral_gb < old.ephemeral_gb:
        raise ApiError(400, "Resize error: Unable to resize disk down.")


async def check_quota(uow: UnitOfWork, project_id: str, old: FlavorSpec, new: FlavorSpec) -> None:
    """A bigger flavor counts against cores and ram quotas (403, as Nova's resize answers)."""
    growth = {"cores": new.vcpus - old.vcpus, "ram": new.ram_mb - old.ram_mb}
    if all(delta <= 0 for delta in growth.values()):
        return
    await quotas.lock_project(uow.conn, project_id)
    limits = await quotas.limits_of(uow.conn, project_id)
    used = await quotas.usage_of(uow.conn, project_id)
    for resource, delta in growth.items():
        limit = limits[resource]
        if delta > 0 and 0 <= limit < used[resource] + delta:
            raise ApiError(
                403,
                f"Quota exceeded for {resource}: Requested {delta}, but already used "
                f"{used[resource]} of {limit} {resource}",
            )


async def claim_move(
    uow: UnitOfWork,
    row: dict[str, Any],
    old: FlavorSpec,
    new: FlavorSpec,
    *,
    same_host: bool,
) -> str:
    """Choose a host for ``new`` and claim it there (``cmp_move_claims``); its name, or 400."""
    req = Request(
        vcpus=new.vcpus,
        ram_mb=new.ram_mb + new.swap_mb,
        disk_gb=new.disk_gb + new.ephemeral_gb,
        now=uow.clock.now(),
        project_id=row["project_id"],
        extra_specs=dict(new.extra_specs),
        excluded_hosts=frozenset() if same_host else frozenset({row["host"]}),
    )
    decision = choose(await load_hosts(uow.conn), req)
    for host in decision.hosts:
        won = await uow.conn.fetchval(
            """UPDATE cmp_hosts SET vcpus_used = vcpus_used + $2,
                      ram_mb_used = ram_mb_used + $3, disk_gb_used = disk_gb_used + $4
               WHERE host = $1 AND enabled
                 AND vcpus_used + $2 <= vcpus * cpu_ratio
                 AND ram_mb_used + $3 <= ram_mb * ram_ratio
                 AND disk_gb_used + $4 <= disk_gb * disk_ratio
               RETURNING host""",
            host,
            req.vcpus,
            req.ram_mb,
            req.disk_gb,
        )
        if won is None:
            continue  # taken meanwhile: the next host
        await uow.conn.execute(
            """INSERT INTO cmp_move_claims (instance_id, source_host, dest_host, vcpus, ram_mb,
                                            disk_gb, old_flavor, new_flavor)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)""",
            row["id"],
            row["host"],
            host,
            req.vcpus,
            req.ram_mb,
            req.disk_gb,
            old.model_dump_json(),
            new.model_dump_json(),
        )
        return str(host)
    raise ApiError(400, decision.why or "No valid host was found. ")


@action("resize")
async def resize(req: ApiRequest[ServerAction], server_id: str, body: Any) -> None:
    """``{"resize": {"flavorRef": "2"}}``: RESIZE, then VERIFY_RESIZE on the chosen host."""
    flavor_ref = parse_resize(body)
    kind = states.OPERATIONS["resize"]
    service = req.app[COMPUTE]
    async with service.store.unit(source="compute-api") as uow:
        row = await lock_server(uow, server_id, scope_of(req))
        check_state(row, kind)
        new = await find_flavor(uow.conn, flavor_ref, row["project_id"] or project_of(req))
        if new is None:
            raise ApiError(400, "Unable to locate requested flavor.")
        old = FlavorSpec.model_validate_json(row["flavor"])
        check_new_flavor(old, new)
        await check_quota(uow, row["project_id"], old, new)
        await uow.conn.execute(  # a stale move claim (a resize given up) must not block this one
            "DELETE FROM cmp_move_claims WHERE instance_id = $1", server_id
        )
        dest = await claim_move(
            uow, row, old, new, same_host=service.settings.allow_resize_to_same_host
        )
        await begin(
            uow,
            row,
            kind,
            Caller.of(req),
            deadline_for(service.settings, kind),
            host=dest,
            flavor=new,
            name=row["name"],
            image_ref=row["image_ref"],
            user_data=row["user_data"],
            power_on=row["power_state"] == 1,
        )


@action("confirmResize")
async def confirm_resize(req: ApiRequest[ServerAction], server_id: str, _: Any) -> web.Response:
    """Keep the new flavor: the old claim (and the old copy) go; 204 as in Nova."""
    await _finish(req, server_id, "confirm_resize")
    return web.Response(status=204)


@action("revertResize")
async def revert_resize(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    """Back to the old flavor on the old host (REVERT_RESIZE, then ACTIVE)."""
    await _finish(req, server_id, "revert_resize")


async def _finish(req: ApiRequest[ServerAction], server_id: str, operation: str) -> None:
    kind = states.OPERATIONS[operation]
    service = req.app[COMPUTE]
    async with service.store.unit(source="compute-api") as uow:
        row = await lock_server(uow, server_id, scope_of(req))
        check_state(row, kind)
        moved = await uow.conn.fetchrow(
            "SELECT source_host, dest_host, old_flavor::text AS old_flavor FROM cmp_move_claims"
            " WHERE instance_id = $1",
            server_id,
        )
        if moved is None:  # Nova: the migration record is gone
            raise ApiError(404, f"Instance {server_id} has not been resized.")
        cross_host = moved["source_host"] != moved["dest_host"]
        deadline = deadline_for(service.settings, kind)
        if operation == "confirm_resize":
            await begin(
                uow,
                row,
                kind,
                Caller.of(req),
                deadline,
                host=moved["source_host"],
                source_host=moved["source_host"] if cross_host else None,
            )
        else:  # the source host still has the old copy: it brings it back
            await begin(
                uow,
                row,
                kind,
                Caller.of(req),
                deadline,
                host=moved["source_host"],
                flavor=FlavorSpec.model_validate_json(moved["old_flavor"]),
            )
