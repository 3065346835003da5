"""Instance disks to and from the image service (snapshots, shelving) and console output.

createImage and shelve: the gateway creates the image record (``queued``), sets the task state and
sends ``compute.snapshot_instance`` to ``compute.<host>``. The agent captures the disk (shelve
powers the instance off first), reports ``compute.instance.snapshot_progressed`` (pending upload)
and sends itself ``compute.upload_snapshot``, whose handler reports ``uploading`` and sends itself
the upload proper, which streams the data to the image service over HTTP and reports
``compute.instance.snapshot_finished``. Separate handlers, because an agent publishes what a
handler emitted only when it returns: so each state shows while it lasts. The conductor records
each step; ``compute.check_image_deadline`` fails a step that took too long (the image is
deleted, the server back to where it was).

Offloading (shelve, shelveOffload): ``compute.offload_instance`` to the host, answered by
``compute.instance.offloaded``; ``compute.offload_shelved`` is the conductor's own timer when
shelved instances are offloaded later (``shelved_offload_time`` > 0).

Console output is a read that may fail fast: ``compute.get_console_output`` to the host, answered
by ``compute.console_output_ready`` to the conductor. Both are commands (not kept in the event log).
"""

from __future__ import annotations

from typing import Literal

from schemas.base import Command
from schemas.compute import InstanceEvent

# Why a disk is captured: a user's snapshot (createImage) or a shelve.
SnapshotPurpose = Literal["snapshot", "shelve"]


class SnapshotInstance(Command):
    """Capture an instance's disk on the addressed host, then upload it as ``image_id``. v1: initial.

    ``image_url`` is the image's URL on the image service (``.../v2/images/<id>``); ``auth_token``
    the requesting user's token (as Nova does; commands are not kept in the event log).
    ``power_off``: shelve stops the instance before capturing it.
    """

    kind: Literal["compute.snapshot_instance"] = "compute.snapshot_instance"
    v: Literal[1] = 1
    instance_id: str
    image_id: str
    image_url: str
    auth_token: str
    purpose: SnapshotPurpose = "snapshot"
    power_off: bool = False


class UploadSnapshot(Command):
    """Upload a captured disk: the agent sends this to itself after capturing. v1: initial.

    The first one (``announced`` false) only reports ``uploading`` and sends itself the second,
    which uploads: so the report is out before the upload starts.
    """

    kind: Literal["compute.upload_snapshot"] = "compute.upload_snapshot"
    v: Literal[1] = 1
    instance_id: str
    image_id: str
    image_url: str
    auth_token: str
    purpose: SnapshotPurpose = "snapshot"
    disk_format: str | None = None
    container_format: str | None = None
    announced: bool = False


class InstanceSnapshotProgressed(InstanceEvent):
    """A snapshot reached a step: the disk is captured (``pending_upload``) or being uploaded.

    The conductor shows it as Nova's task state (``image_pending_upload``,
    ``shelving_image_uploading``, ...). v1: initial.
    """

    kind: Literal["compute.instance.snapshot_progressed"] = "compute.instance.snapshot_progressed"
    v: Literal[1] = 1
    image_id: str
    host: str
    purpose: SnapshotPurpose = "snapshot"
    step: Literal["pending_upload", "uploading"]
    power_state: int | None = None


class InstanceSnapshotFinished(InstanceEvent):
    """The snapshot is uploaded (``error`` None) or failed (``error`` says why). v1: initial."""

    kind: Literal["compute.instance.snapshot_finished"] = "compute.instance.snapshot_finished"
    v: Literal[1] = 1
    image_id: str
    host: str
    purpose: SnapshotPurpose = "snapshot"
    power_state: int | None = None
    error: str | None = None


class CheckImageDeadline(Command):
    """A durable timer fired: if the instance is still in ``step``, that step failed. v1: initial.

    ``image_id``: the image the step was producing (deleted when the step fails), if any.
    """

    kind: Literal["compute.check_image_deadline"] = "compute.check_image_deadline"
    v: Literal[1] = 1
    instance_id: str
    step: str
    deadline_s: float
    image_id: str | None = None


class OffloadInstance(Command):
    """Remove a shelved instance from the addressed host (its disk is in the image). v1: initial."""

    kind: Literal["compute.offload_instance"] = "compute.offload_instance"
    v: Literal[1] = 1
    instance_id: str


class InstanceOffloaded(InstanceEvent):
    """The host no longer holds the shelved instance. v1: initial."""

    kind: Literal["compute.instance.offloaded"] = "compute.instance.offloaded"
    v: Literal[1] = 1
    host: str
    power_state: int = 4


class OffloadShelved(Command):
    """The conductor's timer: offload the instance if it is still shelved. v1: initial."""

    kind: Literal["compute.offload_shelved"] = "compute.offload_shelved"
    v: Literal[1] = 1
    instance_id: str


class GetConsoleOutput(Command):
    """Read an instance's console log on the addressed host (``length``: last lines). v1: initial.

    The answer is ``compute.console_output_ready`` carrying ``request_id``.
    """

    kind: Literal["compute.get_console_output"] = "compute.get_console_output"
    v: Literal[1] = 1
    instance_id: str
    request_id: str
    length: int | None = None


class ConsoleOutputReady(Command):
    """A host's answer to ``compute.get_console_output``, for the conductor to pass on. v1.

    ``error``: ``not_found`` (no console for that instance) or the driver's message.
    """

    kind: Literal["compute.console_output_ready"] = "compute.console_output_ready"
    v: Literal[1] = 1
    instance_id: str
    request_id: str
    host: str
    output: str | None = None
    error: str | None = None
