"""``/os-availability-zone``: the zones of the compute hosts, as Nova lists them.

A zone is available while one of its compute services is enabled (the zones of only disabled
hosts are listed as not available). A host's zone is its effective one: the zone of an aggregate
holding it (:mod:`cloud.compute.api.aggregates`), else the one its agent reports (``nova``), the
same derivation the scheduler's AvailabilityZoneFilter uses. Every authenticated caller may list
the zones; the detail (admin) adds each zone's hosts and services, and the ``internal`` zone of the
scheduler and conductor services.
"""

from __future__ import annotations

from typing import Any

from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavors import enforce
from cloud.compute.api.os_services import (
    COMPUTE_BINARY,
    INTERNAL_ZONE,
    Service,
    all_services,
    timestamp,
)


def _zones(services: list[Service]) -> dict[str, list[Service]]:
    """Zone name -> its services, compute zones in name order, then ``internal``."""
    zones: dict[str, list[Service]] = {}
    for svc in sorted(services, key=lambda s: (s["zone"] == INTERNAL_ZONE, s["zone"])):
        zones.setdefault(svc["zone"], []).append(svc)
    return zones


def _available(services: list[Service]) -> bool:
    return any(s["enabled"] for s in services)


@router.get("/os-availability-zone")
async def list_zones(req: ApiRequest[Any]) -> dict[str, Any]:
    """The compute availability zones and whether they are available."""
    enforce(req, policies.AZ_LIST)
    compute = [s for s in await all_services(req) if s["binary"] == COMPUTE_BINARY]
    return {
        "availabilityZoneInfo": [
            {"zoneName": zone, "zoneState": {"available": _available(members)}, "hosts": None}
            for zone, members in _zones(compute).items()
        ]
    }


@router.get("/os-availability-zone/detail", errors=(403,))
async def list_zones_detail(req: ApiRequest[Any]) -> dict[str, Any]:
    """Every zone with its hosts and their services (admin)."""
    enforce(req, policies.AZ_DETAIL)
    info = []
    for zone, members in _zones(await all_services(req)).items():
        hosts: dict[str, dict[str, Any]] = {}
        for svc in members:
            hosts.setdefault(svc["host"], {})[svc["binary"]] = {
                "available": svc["up"],
                "active": svc["enabled"],
                "updated_at": timestamp(svc["updated_at"]),
            }
        info.append(
            {"zoneName": zone, "zoneState": {"available": _available(members)}, "hosts": hosts}
        )
    return {"availabilityZoneInfo": info}
