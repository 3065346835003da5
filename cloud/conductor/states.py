"""Instance states: Nova's (vm_state, task_state) → API status, and the fault a failure records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

BUILDING, ACTIVE, STOPPED, ERROR, DELETED = "building", "active", "stopped", "error", "deleted"
SCHEDULING, SPAWNING, DELETING = "scheduling", "spawning", "deleting"
POWERING_OFF, POWERING_ON = "powering-off", "powering-on"
# Task states of an existing instance: a missed deadline reverts them (no ERROR), as Nova does.
REVERTIBLE = (POWERING_OFF, POWERING_ON)

_STATUS = {
    BUILDING: "BUILD",
    ACTIVE: "ACTIVE",
    STOPPED: "SHUTOFF",
    ERROR: "ERROR",
    DELETED: "DELETED",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
}


def status_of(vm_state: str, task_state: str | None) -> str:
    """The API ``status`` Nova derives from the vm_state (task_state refines a few)."""
    if vm_state == ACTIVE and task_state in ("rebooting", "reboot_pending", "reboot_started"):
        return "REBOOT"
    return _STATUS.get(vm_state, "UNKNOWN")


def fault(message: str, details: str, at: datetime, code: int = 500) -> dict[str, Any]:
    """Nova's instance fault: ``{"code", "message", "details", "created"}``."""
    return {
        "code": code,
        "message": message,
        "details": details,
        "created": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
