"""Messages of the runtime itself: service liveness."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from schemas.base import Event


class ServiceHeartbeat(Event):
    """A running actor is alive. v1: initial. Published directly, never kept in the event log."""

    kind: Literal["service.heartbeat"] = "service.heartbeat"
    v: Literal[1] = 1
    host: str
    binary: str
    version: str
    started_at: datetime
    readiness: dict[str, bool] = Field(default_factory=dict)


class _ServiceEvent(Event):
    stream_prefix: ClassVar[str | None] = "service"
    stream_key: ClassVar[str | None] = "service_id"

    service_id: str
    host: str
    binary: str


class ServiceMarkedDown(_ServiceEvent):
    """A service missed its heartbeats for longer than the window. v1: initial."""

    kind: Literal["service.marked_down"] = "service.marked_down"
    v: Literal[1] = 1
    last_seen_at: datetime
    window_s: float


class ServiceMarkedUp(_ServiceEvent):
    """A service heartbeats again after being down, or for the first time. v1: initial."""

    kind: Literal["service.marked_up"] = "service.marked_up"
    v: Literal[1] = 1
    version: str
    started_at: datetime
