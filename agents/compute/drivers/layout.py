"""Where an instance's files live on the host, and the record that lets the driver render its
domain XML again (resize, rebuild, revert) without parsing libvirt's.

``<instances_dir>/<instance_id>/``: ``disk`` (qcow2 overlay), ``kernel``/``ramdisk`` (copies: libvirt
relabels what a domain boots from, so instances must not share them), ``console.log``,
``domain.json``, and while a resize awaits its confirmation ``disk.resize-backup`` +
``domain.resize-backup.json``. ``<instances_dir>/_base/`` is the image cache,
``<instances_dir>/_snapshots/`` the snapshots staged for upload.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from agents.compute.drivers.domain_xml import DirectBoot, DomainConfig


def as_uuid(instance_id: str) -> str | None:
    """The instance id as the domain's UUID, when it is one (Nova's ids are)."""
    try:
        return str(uuid.UUID(instance_id))
    except ValueError:
        return None


@dataclass(frozen=True)
class InstanceFiles:
    root: Path

    @property
    def disk(self) -> Path:
        return self.root / "disk"

    @property
    def kernel(self) -> Path:
        return self.root / "kernel"

    @property
    def ramdisk(self) -> Path:
        return self.root / "ramdisk"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def config(self) -> Path:
        return self.root / "domain.json"

    @property
    def disk_backup(self) -> Path:
        return self.root / "disk.resize-backup"

    @property
    def config_backup(self) -> Path:
        return self.root / "domain.resize-backup.json"


def dump_config(cfg: DomainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=1, sort_keys=True)


def load_config(text: str) -> DomainConfig:
    raw = json.loads(text)
    boot = raw.pop("boot", None)
    return DomainConfig(**raw, boot=DirectBoot(**boot) if boot else None)


def check_instances_dir(path: Path) -> str | None:
    """Create ``path`` if needed; None when the QEMU process (another user) can reach files in it,
    else why not. libvirt hands each disk to that user but not the directories above it, so a
    directory under /root or a private temporary directory fails every boot with an opaque
    "Permission denied" from QEMU; better to refuse at start and say which directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create it: {exc}"
    for directory in (path, *path.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return (
                f"{directory} is not searchable by other users (the QEMU user among them); "
                "choose another instances_dir or chmod o+x it"
            )
    return None
