"""Which hypervisor driver a compute agent runs: ``fake``, ``libvirt`` or ``auto``.

``auto`` takes libvirt when a libvirt daemon answers (the ``libvirt`` module imports and the
configured URI opens), else the fake driver; ``libvirt`` insists (and the agent then waits for the
daemon when it is down: see :mod:`agents.compute.base`). The probe is the only place outside the
libvirt driver that touches libvirt, and it only imports it dynamically, in a thread, with a time
limit (a hung daemon must not hang the start).
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass

PROBE_TIMEOUT_S = 3.0


class DriverUnavailable(RuntimeError):
    """The requested driver cannot run in this build or on this machine."""


@dataclass(frozen=True)
class DriverChoice:
    driver: str  # "fake" or "libvirt"
    reason: str


def probe_libvirt(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a libvirt daemon answers at ``uri``; otherwise why not."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            libvirt = importlib.import_module("libvirt")
        except ImportError:
            outcome.append("the libvirt Python module is not installed")
            return
        try:
            conn = libvirt.open(uri)
            conn.close()
        except Exception as exc:  # libvirt.libvirtError and whatever a broken install raises
            outcome.append(f"cannot open {uri}: {exc}")
            return
        outcome.append(None)

    thread = threading.Thread(target=attempt, name="libvirt-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        return f"{uri} did not answer within {timeout_s:g}s"
    return outcome[0]


def choose_driver(requested: str, libvirt_uri: str) -> DriverChoice:
    """Resolve ``fake|libvirt|auto``; raise :class:`DriverUnavailable` for what cannot run."""
    if requested == "fake":
        return DriverChoice("fake", "requested")
    if requested == "libvirt":
        if importlib.util.find_spec("libvirt") is None:
            raise DriverUnavailable(
                "libvirt requested but the libvirt Python module is not installed"
            )
        return DriverChoice("libvirt", "requested")
    if requested != "auto":
        raise DriverUnavailable(f"unknown compute driver {requested!r}: fake, libvirt or auto")
    why_not = probe_libvirt(libvirt_uri)
    if why_not is not None:
        return DriverChoice("fake", f"auto: no libvirt daemon ({why_not})")
    return DriverChoice("libvirt", f"auto: libvirt answers at {libvirt_uri}")
