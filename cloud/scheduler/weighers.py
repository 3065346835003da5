"""Pure weighing: each weigher scores the hosts that passed the filters; the best score wins.

As in Nova, a weigher's raw values are normalised to 0..1 over the candidates, multiplied by its
multiplier and summed. A positive RAM, disk or CPU multiplier spreads (most free first), a negative
one stacks; a negative instance-count multiplier prefers the least loaded hosts. The soft
(anti-)affinity weighers prefer hosts with more (fewer) members of the instance's server group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cloud.scheduler.state import HostState, Request

Weigher = Callable[[HostState, Request], float]


def ram_weigher(host: HostState, req: Request) -> float:
    return host.free_ram_mb


def disk_weigher(host: HostState, req: Request) -> float:
    return host.free_disk_gb


def cpu_weigher(host: HostState, req: Request) -> float:
    return host.free_vcpus


def num_instances_weigher(host: HostState, req: Request) -> float:
    return float(host.num_instances)


def soft_affinity_weigher(host: HostState, req: Request) -> float:
    if req.group_policy != "soft-affinity":
        return 0.0
    return float(req.group_hosts.get(host.host, 0))


def soft_anti_affinity_weigher(host: HostState, req: Request) -> float:
    if req.group_policy != "soft-anti-affinity":
        return 0.0
    return -float(req.group_hosts.get(host.host, 0))


ALL_WEIGHERS: dict[str, Weigher] = {
    "RAMWeigher": ram_weigher,
    "DiskWeigher": disk_weigher,
    "CPUWeigher": cpu_weigher,
    "NumInstancesWeigher": num_instances_weigher,
    "ServerGroupSoftAffinityWeigher": soft_affinity_weigher,
    "ServerGroupSoftAntiAffinityWeigher": soft_anti_affinity_weigher,
}
# Nova's default multipliers (num_instances_weight_multiplier is 0.0 there too).
DEFAULT_MULTIPLIERS: dict[str, float] = {
    "RAMWeigher": 1.0,
    "DiskWeigher": 1.0,
    "CPUWeigher": 1.0,
    "NumInstancesWeigher": 0.0,
    "ServerGroupSoftAffinityWeigher": 1.0,
    "ServerGroupSoftAntiAffinityWeigher": 1.0,
}


def weighers_named(
    names: Sequence[str], multipliers: Mapping[str, float] | None = None
) -> tuple[tuple[Weigher, float], ...]:
    """(weigher, multiplier) for the enabled names; an unknown name is a configuration error."""
    unknown = [n for n in names if n not in ALL_WEIGHERS]
    if unknown:
        raise ValueError(f"unknown scheduler weighers: {', '.join(unknown)}")
    given = {**DEFAULT_MULTIPLIERS, **(multipliers or {})}
    return tuple((ALL_WEIGHERS[n], float(given.get(n, 1.0))) for n in names if given.get(n, 1.0))


DEFAULT_WEIGHERS = weighers_named(tuple(ALL_WEIGHERS))


def _applies(weigher: Weigher, req: Request) -> bool:
    if weigher is soft_affinity_weigher:
        return req.group_policy == "soft-affinity" and bool(req.group_hosts)
    if weigher is soft_anti_affinity_weigher:
        return req.group_policy == "soft-anti-affinity" and bool(req.group_hosts)
    return True


def order(
    hosts: list[HostState], req: Request, weighers: Sequence[tuple[Weigher, float]]
) -> list[HostState]:
    """The hosts best first (ties by name, so the order is deterministic)."""
    if len(hosts) < 2:
        return hosts
    totals = [0.0] * len(hosts)
    for weigher, multiplier in weighers:
        if not multiplier or not _applies(weigher, req):
            continue
        raw = [weigher(h, req) for h in hosts]
        low, high = min(raw), max(raw)
        if high == low:
            continue  # the same for every host: it cannot tell them apart
        scale = multiplier / (high - low)
        totals = [t + (r - low) * scale for t, r in zip(totals, raw, strict=True)]
    ranked = sorted(range(len(hosts)), key=lambda i: (-totals[i], hosts[i].host))
    return [hosts[i] for i in ranked]
