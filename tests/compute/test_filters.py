"""Placement filters: pure functions, explained eliminations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.scheduler.filters import (
    FILTERS,
    HostState,
    Request,
    choose,
    filters_named,
    spec_matches,
)

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
    assert {k: v for k, v in decision.eliminated.items() if v} == {
        "ComputeFilter": 1,
        "RamFilter": 1,
        "CoreFilter": 1,
    }
    assert decision.eliminated["AvailabilityZoneFilter"] == 0  # every enabled filter is listed
    assert "RamFilter removed 1" in decision.why and "CoreFilter removed 1" in decision.why
    assert "AvailabilityZoneFilter" not in decision.why


def test_no_hosts_at_all() -> None:
    decision = choose([], req())
    assert decision.hosts == [] and "no compute hosts" in decision.why


def test_availability_zone_must_match_when_asked() -> None:
    hosts = [host("a", availability_zone="az1"), host("b", availability_zone="az2")]
    assert choose(hosts, req(availability_zone="az2")).hosts == ["b"]
    assert len(choose(hosts, req()).hosts) == 2


def test_forced_down_hosts_are_removed_by_the_compute_filter() -> None:
    decision = choose([host("down", forced_down=True), host("up")], req())
    assert decision.hosts == ["up"]
    assert decision.eliminated["ComputeFilter"] == 1


def test_hosts_already_tried_are_excluded() -> None:
    decision = choose([host("a"), host("b")], req(excluded_hosts=frozenset({"a"})))
    assert decision.hosts == ["b"]
    assert decision.eliminated["RetryFilter"] == 1


def test_num_instances_filter_caps_a_host() -> None:
    hosts = [host("busy", num_instances=3), host("idle", num_instances=2)]
    decision = choose(hosts, req(max_instances_per_host=3))
    assert decision.hosts == ["idle"]
    assert decision.eliminated["NumInstancesFilter"] == 1


def test_image_properties_must_fit_the_host() -> None:
    hosts = [host("fake"), host("kvm", hypervisor_type="QEMU"), host("arm", architecture="aarch64")]
    assert choose(hosts, req(image_properties={"img_hv_type": "kvm"})).hosts == ["kvm"]
    assert choose(hosts, req(image_properties={"hw_architecture": "aarch64"})).hosts == ["arm"]
    assert choose(hosts, req(image_properties={"hw_vm_mode": "xen"})).hosts == []
    assert len(choose(hosts, req(image_properties={"os_distro": "cirros"})).hosts) == 3


def test_anti_affinity_keeps_members_apart_up_to_max_server_per_host() -> None:
    hosts = [host("a"), host("b"), host("c")]
    group = {"a": 1, "b": 2}
    decision = choose(hosts, req(group_policy="anti-affinity", group_hosts=group))
    assert decision.hosts == ["c"]
    assert decision.eliminated["ServerGroupAntiAffinityFilter"] == 2
    ruled = req(group_policy="anti-affinity", group_hosts=group, max_server_per_host=2)
    assert sorted(choose(hosts, ruled).hosts) == ["a", "c"]


def test_affinity_follows_the_first_member() -> None:
    hosts = [host("a"), host("b")]
    assert len(choose(hosts, req(group_policy="affinity")).hosts) == 2  # no member placed yet
    decision = choose(hosts, req(group_policy="affinity", group_hosts={"b": 1}))
    assert decision.hosts == ["b"]
    full = [host("a"), host("b", vcpus=1, cpu_ratio=1.0, vcpus_used=1)]
    assert choose(full, req(group_policy="affinity", group_hosts={"b": 1})).hosts == []


def test_same_and_different_host_hints() -> None:
    hosts = [host("a"), host("b"), host("c")]
    assert choose(hosts, req(same_host=frozenset({"b"}))).hosts == ["b"]
    assert choose(hosts, req(same_host=frozenset())).hosts == []  # the named servers are nowhere
    assert sorted(choose(hosts, req(different_host=frozenset({"b"}))).hosts) == ["a", "c"]


def agg(**meta: str) -> dict[str, frozenset[str]]:
    return {k: frozenset(v.split("|")) for k, v in meta.items()}


def test_aggregate_instance_extra_specs() -> None:
    hosts = [host("ssd", aggregate_metadata=agg(ssd="true", gen="3")), host("plain")]
    assert choose(hosts, req(extra_specs={"ssd": "true"})).hosts == ["ssd"]
    scoped = {"aggregate_instance_extra_specs:gen": ">= 2"}
    assert choose(hosts, req(extra_specs=scoped)).hosts == ["ssd"]
    # Other scopes are for other filters; hw: specs do not restrict aggregates.
    assert len(choose(hosts, req(extra_specs={"hw:cpu_policy": "dedicated"})).hosts) == 2
    decision = choose(hosts, req(extra_specs={"ssd": "false"}))
    assert decision.hosts == [] and decision.eliminated["AggregateInstanceExtraSpecsFilter"] == 2


def test_extra_spec_operators() -> None:
    assert spec_matches("4", ">= 2") and not spec_matches("1", ">= 2")
    assert spec_matches("4", "= 3")  # Nova's "=" means at least
    assert spec_matches("b", "<or> a <or> b") and not spec_matches("c", "<or> a <or> b")
    assert spec_matches("fast ssd", "<in> ssd")
    assert spec_matches("x", "s== x") and spec_matches("x", "s!= y")
    assert spec_matches("plain", "plain") and not spec_matches("abc", ">= 2")


def test_multi_tenancy_isolation() -> None:
    hosts = [
        host("mine", aggregate_metadata=agg(filter_tenant_id="p1")),
        host("theirs", aggregate_metadata=agg(filter_tenant_id_2="p2,p3")),
        host("shared"),
    ]
    assert sorted(choose(hosts, req(project_id="p1")).hosts) == ["mine", "shared"]
    assert sorted(choose(hosts, req(project_id="p3")).hosts) == ["shared", "theirs"]
    assert choose(hosts, req(project_id="p9")).hosts == ["shared"]


def test_enabled_filters_are_configurable() -> None:
    names = [name for name, _ in filters_named(["RamFilter"])]
    assert names == ["RetryFilter", "RamFilter"]  # retrying always excludes the hosts tried
    hosts = [host("off", enabled=False)]
    assert choose(hosts, req(), filters_named(["RamFilter"])).hosts == ["off"]
    assert choose(hosts, req(), FILTERS).hosts == []
    with pytest.raises(ValueError, match="NoSuchFilter"):
        filters_named(["NoSuchFilter"])
