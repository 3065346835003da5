"""The ``fake_vnc_address`` setting as the fake driver's :class:`ConsoleAddress` (test/demo aid)."""

from __future__ import annotations

from agents.compute.driver import ConsoleAddress


def fake_vnc_address(value: str | None) -> ConsoleAddress | None:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> the address; None or empty -> no VNC console."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"fake_vnc_address must be HOST:PORT, not {value!r}")
    return ConsoleAddress(host.strip("[]"), int(port))
