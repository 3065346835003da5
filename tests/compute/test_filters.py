"""Placement filters and the RAM weigher: pure functions, explained eliminations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.scheduler.filters import HostState, Request, choose

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def host(name: str, **kw: object) -> HostState:
    values: dict[str, object] = {
        "host": name,
        "vcpus": 4,
        "ram_mb": 4096,
        "disk_gb": 100,
        "last_report_at": NOW,
    }
    return HostState(**{**values, **kw})  # type: ignore[arg-type]


def req(vcpus: int = 1, ram_mb: int = 512, disk_gb: int = 1, **kw: object) -> Request:
    return Request(vcpus=vcpus, ram_mb=ram_mb, disk_gb=disk_gb, now=NOW, **kw)  # type: ignore[arg-type]


def test_the_host_with_most_free_ram_comes_first() -> None:
    decision = choose([host("a", ram_mb_used=3000), host("b"), host("c", ram_mb_used=100)], req())
    assert decision.hosts == ["b", "c", "a"]
    assert decision.why == ""


def test_disabled_and_silent_hosts_are_removed_by_the_compute_filter() -> None:
    hosts = [
        host("off", enabled=False),
        host("silent", last_report_at=NOW - timedelta(minutes=5)),
        host("never", last_report_at=None),
        host("ok"),
    ]
    decision = choose(hosts, req())
    assert decision.hosts == ["ok"]
    assert decision.eliminated["ComputeFilter"] == 3


def test_ratios_allow_overcommit_of_ram_cpu_and_disk() -> None:
    h = host("a", vcpus=1, ram_mb=1000, disk_gb=10, cpu_ratio=4.0, ram_ratio=1.5, disk_ratio=2.0)
    assert choose([h], req(vcpus=4, ram_mb=1500, disk_gb=20)).hosts == ["a"]
    assert choose([h], req(vcpus=5)).eliminated["CoreFilter"] == 1
    assert choose([h], req(ram_mb=1501)).eliminated["RamFilter"] == 1
    assert choose([h], req(disk_gb=21)).eliminated["DiskFilter"] == 1


def test_no_valid_host_says_which_filter_removed_how_many() -> None:
    hosts = [host("off", enabled=False), host("small", ram_mb=256, ram_ratio=1.0), host("full")]
    hosts[2] = host("full", vcpus=1, cpu_ratio=1.0, vcpus_used=1)
    decision = choose(hosts, req(ram_mb=512))
    assert decision.hosts == []
    assert decision.considered == 3
    assert decision.eliminated == {
        "ComputeFilter": 1,
        "AvailabilityZoneFilter": 0,
        "RamFilter": 1,
        "CoreFilter": 1,
        "DiskFilter": 0,
    }
    assert "RamFilter removed 1" in decision.why and "CoreFilter removed 1" in decision.why
    assert "AvailabilityZoneFilter" not in decision.why


def test_no_hosts_at_all() -> None:
    decision = choose([], req())
    assert decision.hosts == [] and "no compute hosts" in decision.why


def test_availability_zone_must_match_when_asked() -> None:
    hosts = [host("a", availability_zone="az1"), host("b", availability_zone="az2")]
    assert choose(hosts, req(availability_zone="az2")).hosts == ["b"]
    assert len(choose(hosts, req()).hosts) == 2
