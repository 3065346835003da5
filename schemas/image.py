"""Image (Glance) events: one per change of an image, its data or its members.

Every event names its image (``image_id``; its stream is ``image:<id>``). Metadata events carry the
image's attributes as the API shows them after the change, links left out (``attributes``; on
delete: as they were). Member events name the member project and its status. Data events (upload,
stage, import) carry what the data path learnt about the bytes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.base import Event


class ImageEvent(Event):
    """Base of image events (not sent itself)."""

    stream_prefix: ClassVar[str | None] = "image"
    stream_key: ClassVar[str | None] = "image_id"

    image_id: str


class ImageChanged(ImageEvent):
    """Base of image metadata events (not sent itself)."""

    attributes: dict[str, Any] = Field(default_factory=dict)


class ImageCreated(ImageChanged):
    """An image was created (status ``queued``, no data yet). v1: initial."""

    kind: Literal["image.created"] = "image.created"
    v: Literal[1] = 1


class ImageUpdated(ImageChanged):
    """An image's metadata changed; ``changed`` names the attributes and properties. v1: initial."""

    kind: Literal["image.updated"] = "image.updated"
    v: Literal[1] = 1
    changed: list[str] = Field(default_factory=list)


class ImageDeleted(ImageChanged):
    """An image was deleted (its data is removed after this). v1: initial."""

    kind: Literal["image.deleted"] = "image.deleted"
    v: Literal[1] = 1


class ImageDeactivated(ImageChanged):
    """An active image was deactivated: only admins may download it now. v1: initial."""

    kind: Literal["image.deactivated"] = "image.deactivated"
    v: Literal[1] = 1


class ImageReactivated(ImageChanged):
    """A deactivated image is active again. v1: initial."""

    kind: Literal["image.reactivated"] = "image.reactivated"
    v: Literal[1] = 1


class ImageMemberEvent(ImageEvent):
    """Base of image member events (not sent itself)."""

    member_id: str
    status: str


class ImageMemberAdded(ImageMemberEvent):
    """An image was shared with a project (status ``pending``). v1: initial."""

    kind: Literal["image.member_added"] = "image.member_added"
    v: Literal[1] = 1


class ImageMemberUpdated(ImageMemberEvent):
    """A member project accepted, rejected or set back to pending a shared image. v1: initial."""

    kind: Literal["image.member_updated"] = "image.member_updated"
    v: Literal[1] = 1


class ImageMemberRemoved(ImageMemberEvent):
    """An image is no longer shared with a project (``status``: the last one). v1: initial."""

    kind: Literal["image.member_removed"] = "image.member_removed"
    v: Literal[1] = 1


class ImageUploaded(ImageEvent):
    """An image's data was stored and the image is active. v1: initial."""

    kind: Literal["image.uploaded"] = "image.uploaded"
    v: Literal[1] = 1
    size: int
    checksum: str
    os_hash_algo: str = "sha512"
    os_hash_value: str
    virtual_size: int | None = None


class ImageUploadFailed(ImageEvent):
    """Storing an image's data failed; the image went back to ``queued``. v1: initial."""

    kind: Literal["image.upload_failed"] = "image.upload_failed"
    v: Literal[1] = 1
    reason: str


class ImageStaged(ImageEvent):
    """An image's data was staged for import (status ``uploading``). v1: initial."""

    kind: Literal["image.staged"] = "image.staged"
    v: Literal[1] = 1
    size: int


class ImageImported(ImageEvent):
    """An import finished: the image's data is stored and the image is active. v1: initial."""

    kind: Literal["image.imported"] = "image.imported"
    v: Literal[1] = 1
    method: str
    size: int
    checksum: str
    os_hash_algo: str = "sha512"
    os_hash_value: str
