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

# The flavor is embedded in the server from this microversion on (before: {id, links}).
EMBEDDED_FLAVOR = (2, 47)


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


def brief(req: ApiRequest[Any], row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "links": _links(req, "servers", row["id"])}


def detail(req: ApiRequest[Any], row: Mapping[str, Any], *, admin: bool) -> dict[str, Any]:
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
        "progress": 100 if row["status"] == "ACTIVE" else 0,
        "OS-EXT-AZ:availability_zone": row["availability_zone"] or "",
        "config_drive": "",
        "key_name": row["key_name"],
        "OS-SRV-USG:launched_at": _time(row["launched_at"]),
        "OS-SRV-USG:terminated_at": _time(row["terminated_at"]),
        "OS-EXT-STS:task_state": row["task_state"],
        "OS-EXT-STS:vm_state": row["vm_state"],
        "OS-EXT-STS:power_state": row["power_state"],
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}],
        "locked": False,
        "locked_reason": None,
        "description": None,
        "tags": list(row["tags"]),
        "trusted_image_certificates": None,
        "server_groups": [],
    }
    if admin:
        server.update(
            {
                "OS-EXT-SRV-ATTR:host": row["host"],
                "OS-EXT-SRV-ATTR:hypervisor_hostname": row["host"],
                "OS-EXT-SRV-ATTR:instance_name": f"instance-{row['id'][:8]}",
                "OS-EXT-SRV-ATTR:reservation_id": f"r-{row['id'][:8]}",
                "OS-EXT-SRV-ATTR:launch_index": 0,
                "OS-EXT-SRV-ATTR:hostname": row["name"],
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:root_device_name": None,
                "OS-EXT-SRV-ATTR:user_data": row["user_data"],
                "host_status": "UP" if row["host"] else "",
            }
        )
    fault = _jsonish(row["fault"])
    if fault and row["vm_state"] == "error":
        server["fault"] = fault if admin else {k: v for k, v in fault.items() if k != "details"}
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
