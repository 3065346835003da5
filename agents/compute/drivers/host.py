"""Host facts and disk tools of the libvirt driver: which virt type to run guests with, and
qemu-img (run as an asyncio subprocess: nothing blocks the event loop).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from agents.compute.driver import DriverError

VIRT_TYPES = ("auto", "kvm", "qemu")
_HW_VIRT = re.compile(r"^flags\s*:.*\b(vmx|svm)\b", re.MULTILINE)


def detect_virt_type(setting: str, uri: str, cpuinfo: str) -> str:
    """The domain type for ``setting`` (auto|kvm|qemu) on a host whose /proc/cpuinfo is ``cpuinfo``.

    ``auto`` takes kvm only when the CPU shows hardware virtualization (vmx/svm): /dev/kvm alone
    is not enough (a paravirtual KVM can exist that stock guest kernels hang under), so
    otherwise it is qemu (TCG). libvirt's test driver only knows its own type, ``test``.
    """
    if setting not in VIRT_TYPES:
        raise ValueError(f"virt_type must be one of {', '.join(VIRT_TYPES)}, not {setting!r}")
    if uri.startswith("test:"):
        return "test"
    if setting != "auto":
        return setting
    return "kvm" if _HW_VIRT.search(cpuinfo) else "qemu"


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


class QemuImgError(DriverError):
    """qemu-img failed; the message carries its stderr."""


async def qemu_img(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "qemu-img",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise QemuImgError(f"qemu-img {args[0]}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def image_info(path: Path) -> dict[str, object]:
    """``qemu-img info`` of a file (``-U``: it may be in use by a running guest)."""
    info: dict[str, object] = json.loads(await qemu_img("info", "-U", "--output=json", str(path)))
    return info


async def create_overlay(base: Path, base_format: str, dest: Path, size_gb: int) -> None:
    """A qcow2 overlay on ``base``, grown to ``size_gb`` (0: the base's size); never shrunk."""
    await qemu_img("create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), str(dest))
    await grow(dest, size_gb)


async def grow(disk: Path, size_gb: int) -> None:
    if size_gb <= 0:
        return
    wanted = size_gb << 30
    current = int(str((await image_info(disk)).get("virtual-size", 0)))
    if wanted > current:
        await qemu_img("resize", "-q", str(disk), str(wanted))


async def convert(src: Path, dest: Path, fmt: str = "qcow2") -> None:
    """A standalone copy of ``src`` (its backing chain flattened) in ``fmt``."""
    await qemu_img("convert", "-U", "-O", fmt, str(src), str(dest))


def is_linux_kernel(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 0x206 bytes) is a kernel QEMU can boot
    directly: an x86 Linux boot image ("HdrS" at 0x202) or an ELF executable (PVH)."""
    return head[0x202:0x206] == b"HdrS" or head[:4] == b"\x7fELF"


async def has_boot_sector(disk: Path, fmt: str, scratch: Path) -> bool:
    """Whether the guest-visible first sector of ``disk`` ends with the BIOS boot signature
    0x55AA (an MBR, or GPT's protective MBR); read through qemu-img, so qcow2 works too."""
    await qemu_img("dd", "-f", fmt, "-O", "raw", "bs=512", "count=1", f"if={disk}", f"of={scratch}")
    try:
        sector = await asyncio.to_thread(scratch.read_bytes)
    finally:
        await asyncio.to_thread(scratch.unlink, missing_ok=True)
    return sector[510:512] == b"\x55\xaa"
