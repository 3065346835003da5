"""Message base classes, the envelope, and the (kind, v) registry.

Every message class declares a dotted lowercase ``kind`` and an integer version ``v`` as ``Literal``
fields with defaults. Defining a subclass registers it; two classes may not claim one (kind, v).
Inbound wire models ignore unknown fields, so a newer sender can add optional fields within a version.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class Message(BaseModel):
    """Base of every message on the bus. Immutable; unknown inbound fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str
    v: int

    # Whether this class is an event (a past-tense fact kept in the event log) or a command.
    category: ClassVar[str] = "message"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kind_field, v_field = cls.model_fields["kind"], cls.model_fields["v"]
        kind, v = kind_field.default, v_field.default
        # Abstract bases (Event, Command, families) declare no defaults and are not registered.
        if isinstance(kind, str) and isinstance(v, int):
            REGISTRY.register(cls, kind, v)

    @classmethod
    def message_kind(cls) -> str:
        kind = cls.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{cls.__name__} is abstract: it has no kind")
        return kind

    @classmethod
    def message_version(cls) -> int:
        v = cls.model_fields["v"].default
        if not isinstance(v, int):
            raise TypeError(f"{cls.__name__} is abstract: it has no version")
        return v


class Event(Message):
    """A past-tense fact. Events are appended to the event log under a stream.

    ``stream_prefix`` and ``stream_key`` name the stream: ``f"{stream_prefix}:{self.<stream_key>}"``;
    without a key the stream is the kind itself.
    """

    category: ClassVar[str] = "event"
    stream_prefix: ClassVar[str | None] = None
    stream_key: ClassVar[str | None] = None

    def stream_id(self) -> str:
        if self.stream_key is None:
            return self.kind
        prefix = self.stream_prefix or self.kind.rsplit(".", 1)[0]
        return f"{prefix}:{getattr(self, self.stream_key)}"


class Command(Message):
    """An imperative addressed to whoever consumes it (a queue, or a host-specific address)."""

    category: ClassVar[str] = "command"


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Metadata that travels beside a message body (as AMQP properties and headers)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(default_factory=new_id)
    kind: str
    v: int
    correlation_id: str
    causation_id: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)
    source: str = "unknown"

    @classmethod
    def first(cls, message: Message, source: str, *, at: datetime | None = None) -> Self:
        """The envelope of a message that starts a new conversation (its id is its correlation)."""
        message_id = new_id()
        return cls(
            id=message_id,
            kind=message.kind,
            v=message.v,
            correlation_id=message_id,
            occurred_at=at or utcnow(),
            source=source,
        )

    def reply(self, message: Message, source: str, *, at: datetime | None = None) -> Envelope:
        """The envelope of a message caused by the one this envelope carried."""
        return Envelope(
            kind=message.kind,
            v=message.v,
            correlation_id=self.correlation_id,
            causation_id=self.id,
            occurred_at=at or utcnow(),
            source=source,
        )


class UnknownMessage(LookupError):
    """No class is registered for a (kind, v)."""


class Registry:
    """Maps (kind, v) to message classes."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type[Message]] = {}

    def register(self, cls: type[Message], kind: str, v: int) -> None:
        if not KIND_PATTERN.match(kind):
            raise ValueError(f"{cls.__name__}: kind {kind!r} must be dotted lowercase")
        if v < 1:
            raise ValueError(f"{cls.__name__}: version must be >= 1")
        existing = self._classes.get((kind, v))
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"({kind}, v{v}) is already {existing.__qualname__}")
        self._classes[(kind, v)] = cls

    def lookup(self, kind: str, v: int) -> type[Message]:
        try:
            return self._classes[(kind, v)]
        except KeyError:
            known = sorted(ver for (k, ver) in self._classes if k == kind)
            if known:
                raise UnknownMessage(f"unknown version v{v} of {kind} (known: {known})") from None
            raise UnknownMessage(f"unknown message kind {kind!r}") from None

    def items(self) -> list[tuple[tuple[str, int], type[Message]]]:
        return sorted(self._classes.items())


REGISTRY = Registry()
