"""What the pure placement code sees: a host's state and one instance's request.

Both are plain dataclasses built by the scheduler actor from the database; every field a
newer filter needs has a default, so callers that build them by hand (resize placement, tests)
keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Nova's default_availability_zone: the zone of hosts in no zoned aggregate.
DEFAULT_ZONE = "nova"
_EMPTY: Mapping[str, frozenset[str]] = {}


@dataclass(slots=True)
class HostState:
    """A host as the scheduler sees it: capacity, usage and overcommit ratios.

    Not frozen: a decision builds a thousand of these from rows, and a frozen dataclass's
    ``__init__`` is several times slower. Treat instances as read-only all the same.
    """

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
    availability_zone: str = DEFAULT_ZONE  # the effective zone (aggregates first)
    forced_down: bool = False
    num_instances: int = 0
    hypervisor_type: str = "fake"
    architecture: str = "x86_64"
    # Metadata of the aggregates holding the host: key -> every value it has among them.
    aggregate_metadata: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)

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
    """One instance to place. Only the resources and ``now`` are required."""

    vcpus: int
    ram_mb: int
    disk_gb: int
    now: datetime
    availability_zone: str | None = None
    down_after: timedelta = timedelta(seconds=60)
    project_id: str | None = None
    extra_specs: Mapping[str, str] = field(default_factory=dict)
    image_properties: Mapping[str, str] = field(default_factory=dict)
    # The server group (hint ``group``): its policy and how many members each host already has.
    group_policy: str | None = None
    group_hosts: Mapping[str, int] = field(default_factory=dict)
    max_server_per_host: int = 1
    # Hints ``same_host`` / ``different_host``: the hosts of the instances they name (None: no hint).
    same_host: frozenset[str] | None = None
    different_host: frozenset[str] | None = None
    # Hosts an earlier attempt of this build failed on (rescheduling never goes back to them).
    excluded_hosts: frozenset[str] = frozenset()
    max_instances_per_host: int = 50
