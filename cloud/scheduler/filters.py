"""Pure placement: filters remove hosts that cannot take a request, weighers order the rest.

Every filter is a named predicate over (host, request); :func:`choose` applies the enabled ones in
order and counts how many hosts each one eliminated, so a NoValidHost says exactly why. A filter
with nothing to check for a request (no zone asked, no group, no hint) is skipped without looking
at a host: a decision over a thousand hosts stays a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cloud.scheduler.state import HostState, Request
from cloud.scheduler.weighers import DEFAULT_WEIGHERS, Weigher, order

__all__ = ["FILTERS", "Decision", "HostState", "Request", "choose", "filters_named"]

Filter = Callable[[HostState, Request], bool]
AGGREGATE_SCOPE = "aggregate_instance_extra_specs"


def retry_filter(host: HostState, req: Request) -> bool:
    """Not a host an earlier attempt of this build failed on."""
    return host.host not in req.excluded_hosts


def compute_filter(host: HostState, req: Request) -> bool:
    """Enabled, not forced down, and up (reported within the window)."""
    return (
        host.enabled
        and not host.forced_down
        and host.last_report_at is not None
        and req.now - host.last_report_at <= req.down_after
    )


def availability_zone_filter(host: HostState, req: Request) -> bool:
    return req.availability_zone in (None, "", host.availability_zone)


def ram_filter(host: HostState, req: Request) -> bool:
    return host.free_ram_mb >= req.ram_mb


def core_filter(host: HostState, req: Request) -> bool:
    return host.free_vcpus >= req.vcpus


def disk_filter(host: HostState, req: Request) -> bool:
    return host.free_disk_gb >= req.disk_gb


def num_instances_filter(host: HostState, req: Request) -> bool:
    return host.num_instances < req.max_instances_per_host


_HV_ALIASES = {"kvm": "qemu"}  # libvirt reports QEMU for both


def image_properties_filter(host: HostState, req: Request) -> bool:
    """The image's architecture and hypervisor type, when it names them, are the host's."""
    props = req.image_properties
    arch = props.get("hw_architecture") or props.get("architecture")
    if arch and arch.lower() != host.architecture.lower():
        return False
    hv = (props.get("img_hv_type") or props.get("hypervisor_type") or "").lower()
    if hv and _HV_ALIASES.get(hv, hv) != _HV_ALIASES.get(
        host.hypervisor_type.lower(), host.hypervisor_type.lower()
    ):
        return False
    mode = (props.get("hw_vm_mode") or props.get("vm_mode") or "").lower()
    return mode in ("", "hvm")


def server_group_affinity_filter(host: HostState, req: Request) -> bool:
    """Affinity: once a member is placed, only the members' hosts."""
    if req.group_policy != "affinity" or not req.group_hosts:
        return True
    return host.host in req.group_hosts


def server_group_anti_affinity_filter(host: HostState, req: Request) -> bool:
    """Anti-affinity: fewer than ``max_server_per_host`` members on the host (default 1)."""
    if req.group_policy != "anti-affinity":
        return True
    return req.group_hosts.get(host.host, 0) < req.max_server_per_host


def same_host_filter(host: HostState, req: Request) -> bool:
    return req.same_host is None or host.host in req.same_host


def different_host_filter(host: HostState, req: Request) -> bool:
    return req.different_host is None or host.host not in req.different_host


def _float_op(check: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def op(value: str, wanted: str) -> bool:
        try:
            return check(float(value), float(wanted))
        except ValueError:
            return False

    return op


_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": _float_op(lambda a, b: a >= b),
    "==": _float_op(lambda a, b: a == b),
    "!=": _float_op(lambda a, b: a != b),
    ">=": _float_op(lambda a, b: a >= b),
    "<=": _float_op(lambda a, b: a <= b),
    "<in>": lambda a, b: b in a,
    "s==": lambda a, b: a == b,
    "s!=": lambda a, b: a != b,
    "s<": lambda a, b: a < b,
    "s<=": lambda a, b: a <= b,
    "s>": lambda a, b: a > b,
    "s>=": lambda a, b: a >= b,
}


def spec_matches(value: str, wanted: str) -> bool:
    """Nova's extra spec operators: ``>= 4``, ``<in> ssd``, ``<or> a <or> b``, ``s== x``, else ==."""
    words = wanted.split()
    if not words:
        return value == wanted
    op = words[0]
    if op == "<or>":
        return value in words[1::2]
    if op == "<all-in>":
        return all(w in value for w in words[1:])
    check = _OPS.get(op)
    if check is None:
        return value == wanted
    return len(words) > 1 and check(value, words[1])


def aggregate_instance_extra_specs_filter(host: HostState, req: Request) -> bool:
    """Each unscoped or ``aggregate_instance_extra_specs:`` spec matches the host's aggregates."""
    for key, wanted in req.extra_specs.items():
        scope, _, name = key.partition(":")
        if name:
            if scope != AGGREGATE_SCOPE:
                continue
            key = name
        values = host.aggregate_metadata.get(key)
        if not values or not any(spec_matches(v, wanted) for v in values):
            return False
    return True


def aggregate_multi_tenancy_isolation_filter(host: HostState, req: Request) -> bool:
    """A host in an aggregate with ``filter_tenant_id*`` takes only those projects."""
    meta = host.aggregate_metadata
    if not meta:
        return True
    allowed: set[str] = set()
    for key, values in meta.items():
        if key.startswith("filter_tenant_id"):
            for value in values:
                allowed.update(p.strip() for p in value.split(","))
    return not allowed or req.project_id in allowed


def _has_unscoped_or_aggregate_specs(req: Request) -> bool:
    return any(":" not in k or k.startswith(AGGREGATE_SCOPE + ":") for k in req.extra_specs)


# name -> (filter, whether it has anything to check for this request; None: always).
ALL_FILTERS: dict[str, tuple[Filter, Callable[[Request], bool] | None]] = {
    "RetryFilter": (retry_filter, lambda r: bool(r.excluded_hosts)),
    "ComputeFilter": (compute_filter, None),
    "AvailabilityZoneFilter": (availability_zone_filter, lambda r: bool(r.availability_zone)),
    "RamFilter": (ram_filter, None),
    "CoreFilter": (core_filter, None),
    "DiskFilter": (disk_filter, None),
    "NumInstancesFilter": (num_instances_filter, None),
    "ImagePropertiesFilter": (image_properties_filter, lambda r: bool(r.image_properties)),
    "ServerGroupAffinityFilter": (
        server_group_affinity_filter,
        lambda r: r.group_policy == "affinity" and bool(r.group_hosts),
    ),
    "ServerGroupAntiAffinityFilter": (
        server_group_anti_affinity_filter,
        lambda r: r.group_policy == "anti-affinity",
    ),
    "SameHostFilter": (same_host_filter, lambda r: r.same_host is not None),
    "DifferentHostFilter": (different_host_filter, lambda r: r.different_host is not None),
    "AggregateInstanceExtraSpecsFilter": (
        aggregate_instance_extra_specs_filter,
        _has_unscoped_or_aggregate_specs,
    ),
    "AggregateMultiTenancyIsolation": (aggregate_multi_tenancy_isolation_filter, None),
}
# The default when settings name none: every filter; RetryFilter is always on.
DEFAULT_FILTER_NAMES: tuple[str, ...] = tuple(n for n in ALL_FILTERS if n != "RetryFilter")


def filters_named(names: Sequence[str]) -> tuple[tuple[str, Filter], ...]:
    """The enabled filters (RetryFilter first, always); an unknown name is a configuration error."""
    unknown = [n for n in names if n not in ALL_FILTERS]
    if unknown:
        raise ValueError(f"unknown scheduler filters: {', '.join(unknown)}")
    chosen = ["RetryFilter", *(n for n in names if n != "RetryFilter")]
    return tuple((n, ALL_FILTERS[n][0]) for n in chosen)


FILTERS: tuple[tuple[str, Filter], ...] = filters_named(DEFAULT_FILTER_NAMES)


@dataclass(frozen=True)
class Decision:
    """Hosts in order of preference, or none with the reason per filter."""

    hosts: list[str]
    considered: int
    eliminated: dict[str, int] = field(default_factory=dict)

    @property
    def why(self) -> str:
        if self.hosts:
            return ""
        if self.considered == 0:
            return "No valid host was found. There are no compute hosts."
        parts = ", ".join(f"{name} removed {n}" for name, n in self.eliminated.items() if n)
        return f"No valid host was found. {self.considered} host(s) considered: {parts}."


def choose(
    hosts: Sequence[HostState],
    req: Request,
    filters: Sequence[tuple[str, Filter]] = FILTERS,
    weigher: Callable[[HostState], float] | None = None,
    weighers: Sequence[tuple[Weigher, float]] = DEFAULT_WEIGHERS,
) -> Decision:
    """Filter, then order by the weighers (or by one raw ``weigher``, highest first)."""
    remaining = list(hosts)
    eliminated: dict[str, int] = {}
    for name, keep in filters:
        known, applies = ALL_FILTERS.get(name, (None, None))
        if not remaining or (known is keep and applies is not None and not applies(req)):
            eliminated[name] = 0
            continue
        kept = [h for h in remaining if keep(h, req)]
        eliminated[name] = len(remaining) - len(kept)
        remaining = kept
    if weigher is not None:
        remaining.sort(key=lambda h: (-weigher(h), h.host))
    else:
        remaining = order(remaining, req, weighers)
    return Decision([h.host for h in remaining], len(hosts), eliminated)
