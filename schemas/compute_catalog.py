"""Compute catalog events: flavors (and who may use private ones) and keypairs.

Flavor events name their flavor (``flavor_id``; stream ``flavor:<id>``) and carry its attributes
as stored after the change (on delete: as they were). Keypair events name the owner and the
keypair (stream ``keypair:<user_id>/<name>``); the private key never travels.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.base import Event


class FlavorEvent(Event):
    """Base of flavor events (not sent itself)."""

    stream_prefix: ClassVar[str | None] = "flavor"
    stream_key: ClassVar[str | None] = "flavor_id"

    flavor_id: str


class FlavorCreated(FlavorEvent):
    """A flavor was created. v1: initial."""

    kind: Literal["compute.flavor.created"] = "compute.flavor.created"
    v: Literal[1] = 1
    attributes: dict[str, Any] = Field(default_factory=dict)


class FlavorUpdated(FlavorEvent):
    """A flavor's description or extra specs changed; ``changed`` names them. v1: initial."""

    kind: Literal["compute.flavor.updated"] = "compute.flavor.updated"
    v: Literal[1] = 1
    attributes: dict[str, Any] = Field(default_factory=dict)
    changed: list[str] = Field(default_factory=list)


class FlavorDeleted(FlavorEvent):
    """A flavor was deleted. v1: initial."""

    kind: Literal["compute.flavor.deleted"] = "compute.flavor.deleted"
    v: Literal[1] = 1
    attributes: dict[str, Any] = Field(default_factory=dict)


class FlavorAccessAdded(FlavorEvent):
    """A project may now use a private flavor. v1: initial."""

    kind: Literal["compute.flavor.access_added"] = "compute.flavor.access_added"
    v: Literal[1] = 1
    project_id: str


class FlavorAccessRemoved(FlavorEvent):
    """A project may no longer use a private flavor. v1: initial."""

    kind: Literal["compute.flavor.access_removed"] = "compute.flavor.access_removed"
    v: Literal[1] = 1
    project_id: str


class KeypairEvent(Event):
    """Base of keypair events (not sent itself)."""

    stream_prefix: ClassVar[str | None] = "keypair"
    stream_key: ClassVar[str | None] = "keypair_ref"

    keypair_ref: str  # "<user_id>/<name>"
    user_id: str
    name: str


class KeypairCreated(KeypairEvent):
    """A keypair was imported or generated. v1: initial."""

    kind: Literal["compute.keypair.created"] = "compute.keypair.created"
    v: Literal[1] = 1
    type: str
    fingerprint: str
    generated: bool = False


class KeypairDeleted(KeypairEvent):
    """A keypair was deleted. v1: initial."""

    kind: Literal["compute.keypair.deleted"] = "compute.keypair.deleted"
    v: Literal[1] = 1
