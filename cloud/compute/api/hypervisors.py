"""``/os-hypervisors``: the compute hosts' capacity and usage as Nova shows it (admin only).

One hypervisor per compute host (``cmp_hosts``), named after its host, of type ``fake`` (or what
its agent reports). Ids are uuids from 2.53 (derived from the host), integers before. Up to 2.87
details carry the capacity (``vcpus``, ``memory_mb``, ``local_gb``: the physical amounts, without
the overcommit ratios) and usage (``*_used``, ``running_vms``); 2.88 removes those fields and
``/os-hypervisors/statistics`` and adds ``uptime`` to the single view.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavors import enforce, service
from cloud.compute.api.microversion import version
from cloud.compute.api.os_services import COMPUTE_BINARY, is_up, public_id

_NAMESPACE = uuid.UUID("0b6a4f8e-2d37-5c1a-8e4b-93f1c2d7a605")
HYPERVISOR_VERSION = 1000  # Nova's fake driver's
Hypervisor = dict[str, Any]
STATS_FIELDS = (
    "vcpus",
    "memory_mb",
    "local_gb",
    "vcpus_used",
    "memory_mb_used",
    "local_gb_used",
    "free_ram_mb",
    "free_disk_gb",
    "current_workload",
    "running_vms",
    "disk_available_least",
)


def hypervisor_id(req: ApiRequest[Any], host: str) -> str | int:
    node = uuid.uuid5(_NAMESPACE, host)
    if version(req) >= (2, 53):
        return str(node)
    return int(node.hex[:7], 16) + 1


async def load(req: ApiRequest[Any], *, servers: bool = False) -> list[Hypervisor]:
    """Every compute host with its usage (and its servers when asked)."""
    svc = service(req)
    now = svc.clock.now()
    async with svc.store.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT h.*, (SELECT count(*) FROM cmp_instances i
                            WHERE i.host = h.host AND i.deleted_at IS NULL) AS running_vms
               FROM cmp_hosts h ORDER BY h.host"""
        )
        hosted: dict[str, list[dict[str, str]]] = {}
        if servers:
            for inst in await conn.fetch(
                """SELECT id, name, host FROM cmp_instances
                   WHERE host IS NOT NULL AND deleted_at IS NULL ORDER BY created_at, id"""
            ):
                hosted.setdefault(inst["host"], []).append(
                    {"name": inst["name"], "uuid": inst["id"]}
                )
    out = []
    for row in rows:
        hyp = dict(row)
        hyp["up"] = not hyp["forced_down"] and is_up(hyp["last_report_at"], now)
        hyp["servers"] = hosted.get(hyp["host"], [])
        out.append(hyp)
    return out


def stats(hyp: Hypervisor) -> dict[str, int]:
    free_disk = hyp["disk_gb"] - hyp["disk_gb_used"]
    return {
        "vcpus": hyp["vcpus"],
        "memory_mb": hyp["ram_mb"],
        "local_gb": hyp["disk_gb"],
        "vcpus_used": hyp["vcpus_used"],
        "memory_mb_used": hyp["ram_mb_used"],
        "local_gb_used": hyp["disk_gb_used"],
        "free_ram_mb": hyp["ram_mb"] - hyp["ram_mb_used"],
        "free_disk_gb": free_disk,
        "current_workload": 0,
        "running_vms": int(hyp["running_vms"]),
        "disk_available_least": free_disk,
    }


def view(
    req: ApiRequest[Any],
    hyp: Hypervisor,
    *,
    detail: bool,
    single: bool = False,
    servers: bool = False,
) -> dict[str, Any]:
    """A hypervisor as Nova shows it at the request's microversion."""
    ver = version(req)
    out: dict[str, Any] = {
        "id": hypervisor_id(req, hyp["host"]),
        "hypervisor_hostname": hyp["host"],
        "state": "up" if hyp["up"] else "down",
        "status": "enabled" if hyp["enabled"] else "disabled",
    }
    if detail:
        out.update(
            {
                "hypervisor_type": hyp["hypervisor_type"],
                "hypervisor_version": HYPERVISOR_VERSION,
                "host_ip": None,  # the agents do not report one
                "service": {
                    "host": hyp["host"],
                    "id": public_id(req, hyp["host"], COMPUTE_BINARY),
                    "disabled_reason": hyp["disabled_reason"],
                },
            }
        )
        if ver < (2, 88):
            out.update(stats(hyp))
        cpu_info: dict[str, Any] = {}
        out["cpu_info"] = cpu_info if ver >= (2, 28) else json.dumps(cpu_info)
        if single and ver >= (2, 88):
            out["uptime"] = None
    if servers:
        out["servers"] = hyp["servers"]
    return out


def _with_servers(req: ApiRequest[Any]) -> bool:
    raw = req.query.get("with_servers")
    if raw is None or version(req) < (2, 53):
        return False
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise ApiError(400, f"Invalid input for query parameters with_servers. Value: {raw}.")


async def _list(req: ApiRequest[Any], *, detail: bool) -> dict[str, Any]:
    enforce(req, policies.HYPERVISORS_DETAIL if detail else policies.HYPERVISORS_LIST)
    with_servers = _with_servers(req)
    hyps = await load(req, servers=with_servers)
    pattern = req.query.get("hypervisor_hostname_pattern")
    if pattern is not None and version(req) >= (2, 53):
        hyps = [h for h in hyps if pattern in h["host"]]
        if not hyps:
            raise ApiError(404, f"No hypervisor matching '{pattern}' could be found.")
    marker = req.query.get("marker")
    if marker is not None and version(req) >= (2, 33):
        ids = [str(hypervisor_id(req, h["host"])) for h in hyps]
        if marker not in ids:
            raise ApiError(400, f"marker [{marker}] not found")
        hyps = hyps[ids.index(marker) + 1 :]
    raw_limit = req.query.get("limit")
    if raw_limit is not None and version(req) >= (2, 33):
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if limit < 0:
            raise ApiError(400, f"Invalid input for query parameters limit. Value: {raw_limit}.")
        hyps = hyps[:limit]
    return {"hypervisors": [view(req, h, detail=detail, servers=with_servers) for h in hyps]}


QUERY = ("hypervisor_hostname_pattern", "with_servers", "limit", "marker")


@router.get("/os-hypervisors", query=QUERY, errors=(400, 403, 404))
async def list_hypervisors(req: ApiRequest[Any]) -> dict[str, Any]:
    """The hypervisors: ids, host names, state and status (admin)."""
    return await _list(req, detail=False)


@router.get("/os-hypervisors/detail", query=QUERY, errors=(400, 403, 404))
async def list_hypervisors_detail(req: ApiRequest[Any]) -> dict[str, Any]:
    """The hypervisors in full (admin)."""
    return await _list(req, detail=True)


@router.get("/os-hypervisors/statistics", errors=(403, 404))
async def hypervisor_statistics(req: ApiRequest[Any]) -> dict[str, Any]:
    """The summed capacity and usage of the enabled hypervisors (admin; removed in 2.88)."""
    if version(req) >= (2, 88):
        raise ApiError(404, "The resource could not be found.")
    enforce(req, policies.HYPERVISORS_STATISTICS)
    total = dict.fromkeys(STATS_FIELDS, 0) | {"count": 0}
    for hyp in await load(req):
        if hyp["enabled"]:
            total["count"] += 1
            for key, value in stats(hyp).items():
                total[key] += value
    return {"hypervisor_statistics": total}


async def find(req: ApiRequest[Any], *, servers: bool = False) -> Hypervisor:
    wanted = req.params["hypervisor_id"]
    for hyp in await load(req, servers=servers):
        if str(hypervisor_id(req, hyp["host"])) == wanted:
            return hyp
    raise ApiError(404, f"Hypervisor with ID {wanted} could not be found.")


@router.get("/os-hypervisors/{hypervisor_id}", query=("with_servers",), errors=(400, 403, 404))
async def show_hypervisor(req: ApiRequest[Any]) -> dict[str, Any]:
    """One hypervisor in full (admin)."""
    enforce(req, policies.HYPERVISORS_SHOW)
    with_servers = _with_servers(req)
    hyp = await find(req, servers=with_servers)
    return {"hypervisor": view(req, hyp, detail=True, single=True, servers=with_servers)}


@router.get("/os-hypervisors/{hypervisor_id}/uptime", errors=(403, 404, 501))
async def hypervisor_uptime(req: ApiRequest[Any]) -> dict[str, Any]:
    """A hypervisor's uptime: the fake driver has none to report (501; removed in 2.88)."""
    if version(req) >= (2, 88):
        raise ApiError(404, "The resource could not be found.")
    enforce(req, policies.HYPERVISORS_UPTIME)
    await find(req)
    raise ApiError(501, "Virt driver does not implement host uptime function.")
