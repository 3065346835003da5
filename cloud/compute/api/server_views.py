"""How a server looks on the wire (Nova's server JSON), from a ``cmp_instances`` row."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from cloud.api.router import ApiRequest
from cloud.compute.api.microversion import version

# The microversion each field of a server first appears at (nova/api/openstack/compute/views).
EXTENDED_ATTRS = (2, 3)  # reservation_id, launch_index, hostname, kernel/ramdisk, user_data, ...
LOCKED = (2, 9)
HOST_STATUS = (2, 16)
DESCRIPTION = (2, 19)
TAGS = (2, 26)
# The flavor is embedded in the server from this microversion on (before: {id, links}).
EMBEDDED_FLAVOR = (2, 47)
TRUSTED_CERTS = (2, 63)
SERVER_GROUPS = (2, 71)
LOCKED_REASON = (2, 73)
HOSTNAME = (2, 90)  # OS-EXT-SRV-ATTR:hostname for non-admins too

# Statuses whose server shows its fault, and statuses that show a progress (Nova's ViewBuilder).
FAULT_STATUSES = ("ERROR", "DELETED")
PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _links(req: ApiRequest[Any], kind: str, item_id: str) -> list[dict[str, str]]:
    base, prefix = req.base_url(), req.operation.router.prefix
    bookmark_root = prefix.rsplit("/", 1)[0]  # /compute/v2.1 -> /compute
    return [
        {"rel": "self", "href": f"{base}{prefix}/{kind}/{item_id}"},
        {"rel": "bookmark", "href": f"{base}{bookmark_root}/{kind}/{item_id}"},
    ]


def host_id(project_id: str, host: str | None) -> str:
    """Nova's ``hostId``: sha224 of project id + host, so projects cannot correlate hosts."""
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


def _jsonish(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def hostname(row: Mapping[str, Any]) -> str:
    """The guest hostname: chosen at boot (2.90) or derived from the name as Nova derives it."""
    return str(row.get("hostname") or row["name"])


def brief(req: ApiRequest[Any], row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "links": _links(req, "servers", row["id"])}


def detail(
    req: ApiRequest[Any],
    row: Mapping[str, Any],
    *,
    admin: bool,
    show_server_groups: bool = False,
    show_user_data: bool = True,
) -> dict[str, Any]:
    """Nova's ``ViewBuilder.show``: each field from the microversion that introduced it.

    ``show_server_groups`` is for a single server's show (and, from 2.75, its PUT and rebuild
    answers), never for list entries; ``show_user_data`` is off only for rebuild answers.
    """
    flavor = _jsonish(row["flavor"])
    if version(req) >= EMBEDDED_FLAVOR:
        flavor_view: dict[str, Any] = {
            "vcpus": flavor["vcpus"],
            "ram": flavor["ram_mb"],
            "disk": flavor["disk_gb"],
            "ephemeral": flavor.get("ephemeral_gb", 0),
            "swap": flavor.get("swap_mb", 0),
            "original_name": flavor["name"],
            "extra_specs": flavor.get("extra_specs", {}),
        }
    else:
        flavor_view = {
            "id": row["flavor_id"],
            "links": [_links(req, "flavors", row["flavor_id"])[1]],
        }
    image: Any = ""
    if row["image_ref"]:
        image = {"id": row["image_ref"], "links": [_links(req, "images", row["image_ref"])[1]]}
    ver = version(req)
    server: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "tenant_id": row["project_id"],
        "user_id": row["user_id"],
        "metadata": _jsonish(row["metadata"]),
        "hostId": host_id(row["project_id"], row["host"]),
        "image": image,
        "flavor": flavor_view,
        "created": _time(row["created_at"]),
        "updated": _time(row["updated_at"]),
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": _links(req, "servers", row["id"]),
        "OS-DCF:diskConfig": "MANUAL",
    }
    fault = _jsonish(row["fault"])
    if fault and row["status"] in FAULT_STATUSES:
        show_details = admin or fault.get("code") != 500
        server["fault"] = {k: v for k, v in fault.items() if k != "details" or show_details}
    if row["status"] in PROGRESS_STATUSES:
        server["progress"] = 100 if row["status"] == "ACTIVE" else 0
    server.update(
        {
            "OS-EXT-AZ:availability_zone": row["availability_zone"] or "",
            "config_drive": "",
            "key_name": row["key_name"],
            "OS-SRV-USG:launched_at": _time(row["launched_at"]),
            "OS-SRV-USG:terminated_at": _time(row["terminated_at"]),
            "security_groups": [{"name": "default"}],
        }
    )
    if admin:  # Nova's os_compute_api:os-extended-server-attributes policy: admins only
        server.update(
            {
                "OS-EXT-SRV-ATTR:host": row["host"],
                "OS-EXT-SRV-ATTR:instance_name": f"instance-{row['id'][:8]}",
                "OS-EXT-SRV-ATTR:hypervisor_hostname": row["host"],
            }
        )
        if ver >= EXTENDED_ATTRS:
            server.update(
                {
                    "OS-EXT-SRV-ATTR:reservation_id": row.get("reservation_id"),
                    "OS-EXT-SRV-ATTR:launch_index": row.get("launch_index", 0),
                    "OS-EXT-SRV-ATTR:hostname": hostname(row),
                    "OS-EXT-SRV-ATTR:kernel_id": "",
                    "OS-EXT-SRV-ATTR:ramdisk_id": "",
                    "OS-EXT-SRV-ATTR:root_device_name": None,
                }
            )
            if show_user_data:
                server["OS-EXT-SRV-ATTR:user_data"] = row["user_data"]
    server.update(
        {
            "OS-EXT-STS:task_state": row["task_state"],
            "OS-EXT-STS:vm_state": row["vm_state"],
            "OS-EXT-STS:power_state": row["power_state"],
            # No volumes yet; from 2.3 each entry would also carry delete_on_termination.
            "os-extended-volumes:volumes_attached": [],
        }
    )
    if ver >= HOST_STATUS and admin:  # os_compute_api:servers:show:host_status: admins only
        server["host_status"] = "UP" if row["host"] else ""
    if ver >= LOCKED:
        server["locked"] = bool(row.get("locked_by"))
    if ver >= LOCKED_REASON:
        server["locked_reason"] = row.get("locked_reason")
    if ver >= DESCRIPTION:
        server["description"] = row.get("description")
    if ver >= TAGS:
        server["tags"] = list(row["tags"] or [])
    if ver >= TRUSTED_CERTS:
        server["trusted_image_certificates"] = None
    if ver >= HOSTNAME and not admin:  # visible to everyone from 2.90 (admins have it above)
        server["OS-EXT-SRV-ATTR:hostname"] = hostname(row)
    if show_server_groups and ver >= SERVER_GROUPS:
        server["server_groups"] = []
    return server


def created(req: ApiRequest[Any], row: Mapping[str, Any], admin_pass: str | None) -> web.Response:
    body: dict[str, Any] = {
        "id": row["id"],
        "links": _links(req, "servers", row["id"]),
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [{"name": "default"}],
    }
    if admin_pass is not None:
        body["adminPass"] = admin_pass
    return web.json_response(
        {"server": body}, status=202, headers={"Location": body["links"][0]["href"]}
    )


# What a PUT answers before 2.75: the base view without the v2.0-extension attributes.
FULL_UPDATE_VIEW = (2, 75)
_UPDATE_KEYS = frozenset(
    {
        "id",
        "name",
        "status",
        "tenant_id",
        "user_id",
        "metadata",
        "hostId",
        "image",
        "flavor",
        "created",
        "updated",
        "addresses",
        "accessIPv4",
        "accessIPv6",
        "links",
        "OS-DCF:diskConfig",
        "fault",
        "progress",
        "locked",
        "locked_reason",
        "description",
        "tags",
        "trusted_image_certificates",
    }
)


def updated(req: ApiRequest[Any], row: Mapping[str, Any], *, admin: bool) -> dict[str, Any]:
    """The answer of ``PUT /servers/{id}``: every field from 2.75 on, the base view before."""
    if version(req) >= FULL_UPDATE_VIEW:
        return detail(req, row, admin=admin, show_server_groups=True)
    full = detail(req, row, admin=admin)
    return {k: v for k, v in full.items() if k in _UPDATE_KEYS}
