"""The libvirt driver's pure parts: domain XML, virt type detection, the instance record, image
records. No libvirt needed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agents.compute.drivers.domain_xml import (
    METADATA_NS,
    DirectBoot,
    DomainConfig,
    build_domain_xml,
    parse_domain,
)
from agents.compute.drivers.host import detect_virt_type
from agents.compute.drivers.image_cache import ImageMeta
from agents.compute.drivers.layout import as_uuid, dump_config, load_config

IID = "5f0c2b7e-8d1a-4c59-a0a4-2f4e9d9c1b10"


def config(**changes: object) -> DomainConfig:
    base: dict[str, object] = dict(
        name=f"aiostack-{IID}",
        instance_id=IID,
        display_name="web-1",
        virt_type="qemu",
        vcpus=2,
        ram_mb=256,
        disk="/srv/instances/x/disk",
        console_log="/srv/instances/x/console.log",
        uuid=IID,
        flavor="m1.tiny",
        image_ref="img-1",
    )
    base.update(changes)
    return DomainConfig(**base)  # type: ignore[arg-type]


def test_domain_xml_has_type_resources_disk_console_and_vnc() -> None:
    root = ET.fromstring(build_domain_xml(config()))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == f"aiostack-{IID}"
    assert root.findtext("uuid") == IID
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "256"
    assert root.findtext("vcpu") == "2"
    disk = root.find("devices/disk")
    assert disk.find("source").get("file") == "/srv/instances/x/disk"
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    log = root.find("devices/serial/log")
    assert log.get("file") == "/srv/instances/x/console.log"
    vnc = root.find("devices/graphics")
    assert vnc.get("type") == "vnc" and vnc.get("autoport") == "yes"
    assert vnc.get("listen") == "127.0.0.1"
    assert root.find("features/acpi") is not None  # clean shutdown = ACPI power button
    assert root.findtext("on_reboot") == "restart"


def test_direct_kernel_boot_sets_kernel_initrd_and_cmdline() -> None:
    boot = DirectBoot("/i/kernel", "/i/ramdisk", "console=ttyS0 quiet")
    os_el = ET.fromstring(build_domain_xml(config(boot=boot))).find("os")
    assert os_el.findtext("kernel") == "/i/kernel"
    assert os_el.findtext("initrd") == "/i/ramdisk"
    assert os_el.findtext("cmdline") == "console=ttyS0 quiet"
    assert os_el.find("boot") is None


def test_disk_boot_without_kernel() -> None:
    os_el = ET.fromstring(build_domain_xml(config())).find("os")
    assert os_el.find("kernel") is None
    assert os_el.find("boot").get("dev") == "hd"


def test_kernel_without_ramdisk_or_cmdline() -> None:
    os_el = ET.fromstring(build_domain_xml(config(boot=DirectBoot("/k")))).find("os")
    assert os_el.findtext("kernel") == "/k"
    assert os_el.find("initrd") is None and os_el.find("cmdline") is None


def test_xml_escapes_names() -> None:
    root = ET.fromstring(build_domain_xml(config(display_name="<a & b>")))
    assert root.findtext("title") == "<a & b>"


def test_no_uuid_when_the_id_is_not_one() -> None:
    assert as_uuid("not-a-uuid") is None
    assert as_uuid(IID.upper()) == IID
    assert ET.fromstring(build_domain_xml(config(uuid=None))).find("uuid") is None


def test_refuses_a_domain_without_resources() -> None:
    with pytest.raises(ValueError):
        build_domain_xml(config(vcpus=0))


def test_parse_reads_back_metadata_vnc_port_disks_and_log() -> None:
    root = ET.fromstring(build_domain_xml(config()))
    root.find("devices/graphics").set("port", "5907")  # as libvirt shows a running domain
    facts = parse_domain(ET.tostring(root, encoding="unicode"))
    assert facts.instance_id == IID and facts.has_vnc
    assert facts.vnc_port == 5907 and facts.vnc_listen == "127.0.0.1"
    assert facts.disks == ("/srv/instances/x/disk",)
    assert facts.console_log == "/srv/instances/x/console.log"
    assert root.find(f"metadata/{{{METADATA_NS}}}instance/{{{METADATA_NS}}}flavor").text == (
        "m1.tiny"
    )


def test_parse_of_a_foreign_or_stopped_domain() -> None:
    facts = parse_domain(
        "<domain type='kvm'><name>x</name><devices>"
        "<graphics type='vnc' port='-1' autoport='yes'/></devices></domain>"
    )
    assert facts.instance_id is None and facts.vnc_port is None and facts.disks == ()
    assert facts.has_vnc
    assert not parse_domain("<domain><devices/></domain>").has_vnc


@pytest.mark.parametrize(
    ("setting", "uri", "flags", "expected"),
    [
        ("auto", "qemu:///system", "fpu vme vmx sse", "kvm"),
        ("auto", "qemu:///system", "fpu svm sse", "kvm"),
        ("auto", "qemu:///system", "fpu hypervisor sse", "qemu"),  # /dev/kvm alone: still TCG
        ("kvm", "qemu:///system", "fpu", "kvm"),
        ("qemu", "qemu:///system", "fpu vmx", "qemu"),
        ("auto", "test:///default", "vmx", "test"),
    ],
)
def test_virt_type(setting: str, uri: str, flags: str, expected: str) -> None:
    cpuinfo = f"processor\t: 0\nflags\t\t: {flags}\n\n"
    assert detect_virt_type(setting, uri, cpuinfo) == expected


def test_virt_type_refuses_unknown_setting() -> None:
    with pytest.raises(ValueError):
        detect_virt_type("xen", "qemu:///system", "")


def test_vmx_in_another_line_does_not_count() -> None:
    assert detect_virt_type("auto", "qemu:///system", "model name\t: vmx-less\nflags : fpu\n") == (
        "qemu"
    )


def test_instance_record_round_trips() -> None:
    for cfg in (config(), config(boot=DirectBoot("/k", None, "console=ttyS0"))):
        assert load_config(dump_config(cfg)) == cfg


def test_image_meta_from_glance_separates_properties() -> None:
    meta = ImageMeta.from_glance(
        {
            "id": "i1",
            "status": "active",
            "disk_format": "qcow2",
            "container_format": "bare",
            "size": 10,
            "checksum": "abc",
            "kernel_id": "k1",
            "ramdisk_id": "r1",
            "os_command_line": "console=ttyS0",
            "tags": [],
            "min_disk": 0,
            "self": "/v2/images/i1",
        }
    )
    assert meta.disk_format == "qcow2" and meta.size == 10 and meta.checksum == "abc"
    assert meta.properties == {
        "kernel_id": "k1",
        "ramdisk_id": "r1",
        "os_command_line": "console=ttyS0",
    }
