"""Server attributes users change through the servers API (tags, lock, description, hostname).

Events of stream ``instance:<id>``; each carries the attribute's whole new value, so a reader of
the log needs no earlier event to know it.
"""

from __future__ import annotations

from typing import Literal

from schemas.compute import InstanceEvent


class InstanceTagsChanged(InstanceEvent):
    """A user added, replaced or removed server tags (``tags``: all of them now). v1: initial."""

    kind: Literal["compute.instance.tags_changed"] = "compute.instance.tags_changed"
    v: Literal[1] = 1
    project_id: str
    tags: list[str]


class InstanceLocked(InstanceEvent):
    """The server was locked by its owner or by an admin (``lock`` action). v1: initial."""

    kind: Literal["compute.instance.locked"] = "compute.instance.locked"
    v: Literal[1] = 1
    project_id: str
    locked_by: Literal["owner", "admin"]
    reason: str | None = None


class InstanceUnlocked(InstanceEvent):
    """The server's lock was released (``unlock`` action). v1: initial."""

    kind: Literal["compute.instance.unlocked"] = "compute.instance.unlocked"
    v: Literal[1] = 1
    project_id: str


class InstanceDescriptionChanged(InstanceEvent):
    """A user set or cleared the server's description (``PUT /servers/{id}``, 2.19). v1: initial."""

    kind: Literal["compute.instance.description_changed"] = "compute.instance.description_changed"
    v: Literal[1] = 1
    project_id: str
    description: str | None


class InstanceHostnameChanged(InstanceEvent):
    """A user changed the server's hostname (``PUT /servers/{id}``, 2.90). v1: initial."""

    kind: Literal["compute.instance.hostname_changed"] = "compute.instance.hostname_changed"
    v: Literal[1] = 1
    project_id: str
    hostname: str
