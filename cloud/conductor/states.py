"""Instance states: Nova's (vm_state, task_state) → API status, and the fault a failure records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

BUILDING, ACTIVE, STOPPED, ERROR, DELETED = "building", "active", "stopped", "error", "deleted"
SCHEDULING, SPAWNING, DELETING = "scheduling", "spawning", "deleting"
POWERING_OFF, POWERING_ON = "powering-off", "powering-on"
# Task states of an existing instance: a missed deadline reverts them (no ERROR), as Nova does.
REVERTIBLE = (POWERING_OFF, POWERING_ON)
# Snapshots and shelving (cloud.conductor.images): Nova's vm_states and task states.
SHELVED, SHELVED_OFFLOADED = "shelved", "shelved_offloaded"
IMAGE_SNAPSHOT, IMAGE_PENDING_UPLOAD, IMAGE_UPLOADING = (
    "image_snapshot",
    "image_pending_upload",
    "image_uploading",
)
SHELVING, SHELVING_IMAGE_PENDING_UPLOAD, SHELVING_IMAGE_UPLOADING = (
    "shelving",
    "shelving_image_pending_upload",
    "shelving_image_uploading",
)
SHELVING_OFFLOADING, UNSHELVING = "shelving_offloading", "unshelving"

# Operations on existing instances (cloud.conductor.operations): Nova's vm_states and task states.
PAUSED, SUSPENDED, RESIZED, RESCUED, SOFT_DELETED = (
    "paused",
    "suspended",
    "resized",
    "rescued",
    "soft-delete",
)
REBOOTING, REBOOT_PENDING, REBOOT_STARTED = "rebooting", "reboot_pending", "reboot_started"
REBOOTING_HARD, REBOOT_PENDING_HARD, REBOOT_STARTED_HARD = (
    "rebooting_hard",
    "reboot_pending_hard",
    "reboot_started_hard",
)
PAUSING, UNPAUSING, SUSPENDING, RESUMING = "pausing", "unpausing", "suspending", "resuming"
RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH = (
    "resize_prep",
    "resize_migrating",
    "resize_migrated",
    "resize_finish",
)
RESIZE_REVERTING, RESIZE_CONFIRMING = "resize_reverting", "resize_confirming"
REBUILDING, REBUILD_BLOCK_DEVICE_MAPPING, REBUILD_SPAWNING = (
    "rebuilding",
    "rebuild_block_device_mapping",
    "rebuild_spawning",
)
# Nova's task_states.ALLOW_REBOOT: a hard reboot may interrupt these.
ALLOW_REBOOT = (
    None,
    REBOOTING,
    REBOOT_PENDING,
    REBOOT_STARTED,
    RESUMING,
    REBOOTING_HARD,
    UNPAUSING,
    PAUSING,
    SUSPENDING,
)

_REBOOT: dict[str | None, str] = {
    REBOOTING: "REBOOT",
    REBOOT_PENDING: "REBOOT",
    REBOOT_STARTED: "REBOOT",
}
_HARD_REBOOT: dict[str | None, str] = dict.fromkeys(
    (REBOOTING_HARD, REBOOT_PENDING_HARD, REBOOT_STARTED_HARD), "HARD_REBOOT"
)
_RESIZE: dict[str | None, str] = dict.fromkeys(
    (RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH), "RESIZE"
)
_REBUILD: dict[str | None, str] = dict.fromkeys(
    (REBUILDING, REBUILD_BLOCK_DEVICE_MAPPING, REBUILD_SPAWNING), "REBUILD"
)

# Nova's nova.api.openstack.common._STATE_MAP: vm_state -> {task_state: status}, "default" else.
_STATE_MAP: dict[str, dict[str | None, str]] = {
    ACTIVE: {
        "default": "ACTIVE",
        **_REBOOT,
        **_HARD_REBOOT,
        "updating_password": "PASSWORD",
        **_REBUILD,
        "migrating": "MIGRATING",
        **_RESIZE,
    },
    BUILDING: {"default": "BUILD"},
    STOPPED: {"default": "SHUTOFF", **_RESIZE, **_REBUILD},
    RESIZED: {"default": "VERIFY_RESIZE", RESIZE_REVERTING: "REVERT_RESIZE"},
    PAUSED: {"default": "PAUSED", "migrating": "MIGRATING"},
    SUSPENDED: {"default": "SUSPENDED"},
    RESCUED: {"default": "RESCUE"},
    ERROR: {"default": "ERROR", **_REBUILD},
    DELETED: {"default": "DELETED"},
    SOFT_DELETED: {"default": "SOFT_DELETED"},
    SHELVED: {"default": "SHELVED"},
    SHELVED_OFFLOADED: {"default": "SHELVED_OFFLOADED"},
}


def status_of(vm_state: str, task_state: str | None) -> str:
    """The API ``status`` Nova derives from the vm_state, refined by the task_state."""
    by_task = _STATE_MAP.get(vm_state)
    if by_task is None:
        return "UNKNOWN"
    return by_task.get(task_state, by_task["default"])


def fault(message: str, details: str, at: datetime, code: int = 500) -> dict[str, Any]:
    """Nova's instance fault: ``{"code", "message", "details", "created"}``."""
    return {
        "code": code,
        "message": message,
        "details": details,
        "created": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass(frozen=True)
class OperationKind:
    """One kind of operation on an existing instance, as the generic operation saga runs it.

    The API checks ``vm_states``/``task_states`` (Nova's ``check_instance_state``), sets
    ``task_state`` and asks the host for ``operation``; the conductor records the outcome:
    ``done`` is the vm_state on success (None: the one the reported power state implies).
    """

    action: str  # Nova's instance action ("reboot", "confirmResize", ...)
    operation: str  # schemas.compute_ops.Operation
    task_state: str
    vm_states: tuple[str, ...]
    event: str  # Nova's name of the step in the instance action's events
    task_states: tuple[str | None, ...] = (None,)
    done: str | None = None


_KINDS = (
    OperationKind("stop", "stop", POWERING_OFF, (ACTIVE, ERROR), "compute_stop_instance"),
    OperationKind("start", "start", POWERING_ON, (STOPPED,), "compute_start_instance"),
    OperationKind("reboot", "reboot_soft", REBOOTING, (ACTIVE,), "compute_reboot_instance"),
    OperationKind(
        "reboot",
        "reboot_hard",
        REBOOTING_HARD,
        (ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR),
        "compute_reboot_instance",
        task_states=ALLOW_REBOOT,
    ),
    OperationKind("pause", "pause", PAUSING, (ACTIVE,), "compute_pause_instance", done=PAUSED),
    OperationKind("unpause", "unpause", UNPAUSING, (PAUSED,), "compute_unpause_instance"),
    OperationKind(
        "suspend", "suspend", SUSPENDING, (ACTIVE,), "compute_suspend_instance", done=SUSPENDED
    ),
    OperationKind("resume", "resume", RESUMING, (SUSPENDED,), "compute_resume_instance"),
    OperationKind(
        "resize", "resize", RESIZE_PREP, (ACTIVE, STOPPED), "compute_resize_instance", done=RESIZED
    ),
    OperationKind(
        "confirmResize", "confirm_resize", RESIZE_CONFIRMING, (RESIZED,), "compute_confirm_resize"
    ),
    OperationKind(
        "revertResize", "revert_resize", RESIZE_REVERTING, (RESIZED,), "compute_revert_resize"
    ),
    OperationKind(
        "rebuild", "rebuild", REBUILDING, (ACTIVE, STOPPED, ERROR), "compute_rebuild_instance"
    ),
)
# By the agent operation; and the task states they hold (their deadlines are the saga's).
OPERATIONS: dict[str, OperationKind] = {kind.operation: kind for kind in _KINDS}
OPERATION_STEPS: dict[str, OperationKind] = {kind.task_state: kind for kind in _KINDS}

# Nova's power states (OS-EXT-STS:power_state) and the vm_state each implies after an operation.
_BY_POWER = {1: ACTIVE, 3: PAUSED, 4: STOPPED, 7: SUSPENDED}


def vm_state_of_power(power_state: int, current: str) -> str:
    """The vm_state an instance is in once the host reports ``power_state`` (else ``current``)."""
    return _BY_POWER.get(power_state, current)
