"""``GET /limits``: the caller's absolute limits and usage (rate limits: none, as Nova today).

Fields follow the microversion: 2.36 drops the network ones, 2.39 ``maxImageMeta``, 2.57 the
personality ones. Admins may ask about another project with ``tenant_id``.
"""

from __future__ import annotations

from typing import Any

from cloud.api.router import ApiRequest
from cloud.compute import policies, quotas
from cloud.compute.api import router
from cloud.compute.api.flavors import allowed, enforce, service
from cloud.compute.api.microversion import version

# (name in the view, quota resource), in Nova's order.
LIMITS = (
    ("maxImageMeta", "metadata_items"),
    ("maxPersonality", "injected_files"),
    ("maxPersonalitySize", "injected_file_content_bytes"),
    ("maxSecurityGroupRules", "security_group_rules"),
    ("maxSecurityGroups", "security_groups"),
    ("maxServerGroupMembers", "server_group_members"),
    ("maxServerGroups", "server_groups"),
    ("maxServerMeta", "metadata_items"),
    ("maxTotalCores", "cores"),
    ("maxTotalFloatingIps", "floating_ips"),
    ("maxTotalInstances", "instances"),
    ("maxTotalKeypairs", "key_pairs"),
    ("maxTotalRAMSize", "ram"),
)
USED = (
    ("totalCoresUsed", "cores"),
    ("totalFloatingIpsUsed", None),
    ("totalInstancesUsed", "instances"),
    ("totalRAMUsed", "ram"),
    ("totalSecurityGroupsUsed", None),
    ("totalServerGroupsUsed", "server_groups"),
)
NETWORK = {
    "maxSecurityGroupRules",
    "maxSecurityGroups",
    "maxTotalFloatingIps",
    "totalFloatingIpsUsed",
    "totalSecurityGroupsUsed",
}
PERSONALITY = {"maxPersonality", "maxPersonalitySize"}


def _hidden(ver: tuple[int, int]) -> set[str]:
    hidden: set[str] = set()
    if ver >= (2, 36):
        hidden |= NETWORK
    if ver >= (2, 39):
        hidden.add("maxImageMeta")
    if ver >= (2, 57):
        hidden |= PERSONALITY
    return hidden


@router.get("/limits", query=("tenant_id", "reserved"))
async def show_limits(req: ApiRequest[Any]) -> dict[str, Any]:
    """Absolute limits and what the project uses of them."""
    project = req.auth.project_id or ""
    enforce(req, policies.LIMITS)
    other = req.query.get("tenant_id")
    if other and other != project and allowed(req, policies.LIMITS_OTHER_PROJECT):
        project = other
    async with service(req).store.pool.acquire() as conn:
        limits = await quotas.limits_of(conn, project)
        used = await quotas.usage_of(conn, project)
    hidden = _hidden(version(req))
    absolute: dict[str, int] = {}
    for name, resource in LIMITS:
        if name not in hidden:
            absolute[name] = limits[resource]
    for name, used_resource in USED:
        if name not in hidden:
            absolute[name] = used[used_resource] if used_resource else 0
    return {"limits": {"rate": [], "absolute": absolute}}
