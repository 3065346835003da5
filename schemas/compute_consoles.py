"""Graphical consoles: where an instance's VNC server listens, asked of its compute host.

A read that may fail fast, like console output (``schemas.compute_images``): the API sends
``compute.get_vnc_console`` to ``compute.<host>``; the host answers
``compute.vnc_console_ready`` to the conductor, which hands it to the waiting API request through
PostgreSQL (:mod:`cloud.compute.host_reads`). Both are commands (not kept in the event log).
"""

from __future__ import annotations

from typing import Literal

from schemas.base import Command


class GetVncConsole(Command):
    """Where does this instance's VNC server listen? Answered with ``request_id``. v1: initial."""

    kind: Literal["compute.get_vnc_console"] = "compute.get_vnc_console"
    v: Literal[1] = 1
    instance_id: str
    request_id: str


class VncConsoleReady(Command):
    """A host's answer to ``compute.get_vnc_console``, for the conductor to pass on. v1: initial.

    ``address``/``port``: where the console proxy connects (set when ``error`` is None).
    ``error``: ``not_found`` (the host does not run the instance), ``unavailable`` (it has no VNC
    console), or why the console cannot be reached now.
    """

    kind: Literal["compute.vnc_console_ready"] = "compute.vnc_console_ready"
    v: Literal[1] = 1
    instance_id: str
    request_id: str
    host: str
    address: str | None = None
    port: int | None = None
    error: str | None = None
