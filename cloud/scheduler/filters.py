"""Pure placement: filters remove hosts that cannot take a request, weighers order the rest.

Every filter is a named predicate over (host, request); :func:`choose` applies them in order and
counts how many hosts each one eliminated, so a NoValidHost says exactly why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class HostState:
    """A host as the scheduler sees it: capacity, usage and overcommit ratios."""

    host: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    vcpus_used: int = 0
    ram_mb_used: int = 0
    disk_gb_used: int = 0
    cpu_ratio: float = 16.0
    ram_ratio: float = 1.5
    disk_ratio: float = 1.0
    enabled: bool = True
    last_report_at: datetime | None = None
    availability_zone: str = "nova"

    @property
    def free_ram_mb(self) -> float:
        return self.ram_mb * self.ram_ratio - self.ram_mb_used

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_ratio - self.vcpus_used

    @property
    def free_disk_gb(self) -> float:
        return self.disk_gb * self.disk_ratio - self.disk_gb_used


@dataclass(frozen=True)
class Request:
    vcpus: int
    ram_mb: int
    disk_gb: int
    now: datetime
    availability_zone: str | None = None
    down_after: timedelta = timedelta(seconds=60)


Filter = Callable[[HostState, Request], bool]


def compute_filter(host: HostState, req: Request) -> bool:
    """Enabled and up (reported within the window)."""
    return (
        host.enabled
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


FILTERS: tuple[tuple[str, Filter], ...] = (
    ("ComputeFilter", compute_filter),
    ("AvailabilityZoneFilter", availability_zone_filter),
    ("RamFilter", ram_filter),
    ("CoreFilter", core_filter),
    ("DiskFilter", disk_filter),
)


def ram_weigher(host: HostState) -> float:
    """Spread: the host with the most free RAM first."""
    return host.free_ram_mb


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
    weigher: Callable[[HostState], float] = ram_weigher,
) -> Decision:
    remaining = list(hosts)
    eliminated: dict[str, int] = {}
    for name, keep in filters:
        kept = [h for h in remaining if keep(h, req)]
        eliminated[name] = len(remaining) - len(kept)
        remaining = kept
    remaining.sort(key=lambda h: (-weigher(h), h.host))
    return Decision([h.host for h in remaining], len(hosts), eliminated)
