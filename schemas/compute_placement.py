"""Placement-side messages: aggregates, server groups, quotas, rescheduling.

Aggregate events name their aggregate (stream ``aggregate:<id>``), server group events their group
(``server_group:<id>``), quota events the project (``quota:<project_id>``). A build that failed on
its host goes back to the scheduler with ``compute.reschedule_instance`` (from the conductor).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from schemas.base import Command, Event


class AggregateEvent(Event):
    """Base of aggregate events (not sent itself)."""

    stream_prefix: ClassVar[str | None] = "aggregate"
    stream_key: ClassVar[str | None] = "aggregate_id"

    aggregate_id: int


class AggregateCreated(AggregateEvent):
    """An admin created a host aggregate. v1: initial."""

    kind: Literal["compute.aggregate.created"] = "compute.aggregate.created"
    v: Literal[1] = 1
    uuid: str
    name: str
    availability_zone: str | None = None


class AggregateUpdated(AggregateEvent):
    """An aggregate's name, metadata or hosts changed; the state after the change. v1: initial.

    ``change``: ``update``, ``set_metadata``, ``add_host`` or ``remove_host``.
    """

    kind: Literal["compute.aggregate.updated"] = "compute.aggregate.updated"
    v: Literal[1] = 1
    change: str
    name: str
    metadata: dict[str, str] = Field(default_factory=dict)
    hosts: list[str] = Field(default_factory=list)


class AggregateDeleted(AggregateEvent):
    """An admin deleted an (empty) aggregate. v1: initial."""

    kind: Literal["compute.aggregate.deleted"] = "compute.aggregate.deleted"
    v: Literal[1] = 1


class ServerGroupEvent(Event):
    """Base of server group events (not sent itself)."""

    stream_prefix: ClassVar[str | None] = "server_group"
    stream_key: ClassVar[str | None] = "group_id"

    group_id: str


class ServerGroupCreated(ServerGroupEvent):
    """A user created a server group. v1: initial."""

    kind: Literal["compute.server_group.created"] = "compute.server_group.created"
    v: Literal[1] = 1
    project_id: str
    name: str
    policy: str
    rules: dict[str, int] = Field(default_factory=dict)


class ServerGroupDeleted(ServerGroupEvent):
    """A server group was deleted (its members stay, without a group). v1: initial."""

    kind: Literal["compute.server_group.deleted"] = "compute.server_group.deleted"
    v: Literal[1] = 1
    project_id: str


class QuotaSetChanged(Event):
    """An admin set (or reverted, ``limits`` empty) a project's compute quotas. v1: initial.

    ``project_id`` is ``class:<name>`` for a quota class (the defaults of every project).
    """

    stream_prefix: ClassVar[str | None] = "quota"
    stream_key: ClassVar[str | None] = "project_id"

    kind: Literal["compute.quota_set.changed"] = "compute.quota_set.changed"
    v: Literal[1] = 1
    project_id: str
    limits: dict[str, int] = Field(default_factory=dict)


class RescheduleInstance(Command):
    """Place again a build that failed on ``failed_host`` (its claim was released). v1: initial.

    The scheduler excludes every host already tried and gives up after its ``max_attempts``.
    """

    kind: Literal["compute.reschedule_instance"] = "compute.reschedule_instance"
    v: Literal[1] = 1
    instance_id: str
    failed_host: str
    reason: str
