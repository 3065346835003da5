"""Weighers: normalised, multiplied, summed; spread or stack; soft (anti-)affinity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloud.scheduler.filters import choose
from cloud.scheduler.state import HostState, Request
from cloud.scheduler.weighers import weighers_named

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def host(name: str, **kw: object) -> HostState:
    values: dict[str, object] = {
        "host": name,
        "vcpus": 8,
        "ram_mb": 8192,
        "disk_gb": 100,
        "last_report_at": NOW,
    }
    return HostState(**{**values, **kw})  # type: ignore[arg-type]


def req(**kw: object) -> Request:
    return Request(vcpus=1, ram_mb=512, disk_gb=1, now=NOW, **kw)  # type: ignore[arg-type]


HOSTS = [host("full", ram_mb_used=6000), host("empty"), host("half", ram_mb_used=3000)]


def test_ram_spreads_by_default_and_stacks_with_a_negative_multiplier() -> None:
    assert choose(HOSTS, req(), weighers=weighers_named(["RAMWeigher"])).hosts == [
        "empty",
        "half",
        "full",
    ]
    stack = weighers_named(["RAMWeigher"], {"RAMWeigher": -1.0})
    assert choose(HOSTS, req(), weighers=stack).hosts == ["full", "half", "empty"]


def test_cpu_and_disk_weighers() -> None:
    hosts = [host("busy", vcpus_used=100, disk_gb_used=90), host("idle")]
    assert choose(hosts, req(), weighers=weighers_named(["CPUWeigher"])).hosts == ["idle", "busy"]
    assert choose(hosts, req(), weighers=weighers_named(["DiskWeigher"])).hosts == ["idle", "busy"]


def test_instance_count_weigher_is_off_by_default_and_spreads_when_negative() -> None:
    hosts = [host("a", num_instances=5), host("b", num_instances=1)]
    off = weighers_named(["NumInstancesWeigher"])
    assert off == ()  # Nova's default multiplier is 0: the weigher does not run
    spread = weighers_named(["NumInstancesWeigher"], {"NumInstancesWeigher": -1.0})
    assert choose(hosts, req(), weighers=spread).hosts == ["b", "a"]


def test_multipliers_weigh_normalised_values() -> None:
    # "ram" has the most free RAM, "cpu" the most free vCPUs; the larger multiplier wins.
    hosts = [host("ram", vcpus_used=64), host("cpu", ram_mb_used=4000)]
    ram_wins = weighers_named(["RAMWeigher", "CPUWeigher"], {"CPUWeigher": 0.5})
    assert choose(hosts, req(), weighers=ram_wins).hosts == ["ram", "cpu"]
    cpu_wins = weighers_named(["RAMWeigher", "CPUWeigher"], {"CPUWeigher": 2.0})
    assert choose(hosts, req(), weighers=cpu_wins).hosts == ["cpu", "ram"]


def test_soft_affinity_prefers_the_members_hosts() -> None:
    members = {"full": 2}
    soft = req(group_policy="soft-affinity", group_hosts=members)
    weighers = weighers_named(
        ["RAMWeigher", "ServerGroupSoftAffinityWeigher"],
        {"ServerGroupSoftAffinityWeigher": 10.0},
    )
    assert choose(HOSTS, soft, weighers=weighers).hosts[0] == "full"


def test_soft_anti_affinity_avoids_the_members_hosts_but_never_fails() -> None:
    hosts = [host("a"), host("b")]
    members = {"a": 1}
    soft = req(group_policy="soft-anti-affinity", group_hosts=members)
    assert choose(hosts, soft).hosts == ["b", "a"]
    only = choose([host("a")], soft)
    assert only.hosts == ["a"]  # a soft policy never leaves a build without a host


def test_ties_are_broken_by_host_name() -> None:
    assert choose([host("b"), host("a")], req()).hosts == ["a", "b"]


def test_unknown_weigher_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="Nope"):
        weighers_named(["Nope"])
