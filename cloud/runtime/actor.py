"""Actors: classes whose handler methods are registered by the message type they take."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import structlog

from cloud.runtime.bus import COMMANDS, EVENTS, Binding
from cloud.runtime.clock import Clock
from schemas import Command, Envelope, Event, Message

if TYPE_CHECKING:
    from cloud.store.conn import DbConnection

M = TypeVar("M", bound=Message)
HandlerFn = Callable[[Any, "Context"], Awaitable[None]]  # a bound handler method
_HANDLES_ATTR = "__aiostack_handles__"


def handles(
    message_type: type[M],
) -> Callable[
    [Callable[[Any, M, Context], Awaitable[None]]], Callable[[Any, M, Context], Awaitable[None]]
]:
    """Mark an ``async def handler(self, msg, ctx)`` as the actor's handler of ``message_type``."""

    def mark(
        fn: Callable[[Any, M, Context], Awaitable[None]],
    ) -> Callable[[Any, M, Context], Awaitable[None]]:
        setattr(fn, _HANDLES_ATTR, message_type)
        return fn

    return mark


class Writer(Protocol):
    """Where a context's writes go: a database unit of work, or a publish-after-success buffer."""

    async def emit(
        self, message: Message, *, to: str | None = None, expected_version: int | None = None
    ) -> Envelope: ...

    async def schedule(
        self, message: Message, *, at: datetime, key: str, to: str | None = None
    ) -> Envelope: ...

    async def cancel_timer(self, key: str) -> bool: ...


class Context:
    """What a handler may touch: emit, timers, the clock, a bound logger, and (control plane) the DB.

    ``envelope`` is the handled message's; it is ``None`` in ``tick``.
    """

    def __init__(
        self,
        envelope: Envelope | None,
        writer: Writer,
        clock: Clock,
        log: structlog.typing.FilteringBoundLogger,
        conn: DbConnection | None = None,
    ) -> None:
        self.envelope, self._writer, self.clock, self.log, self._conn = (
            envelope,
            writer,
            clock,
            log,
            conn,
        )

    @property
    def conn(self) -> DbConnection:
        """The handler's transaction (control-plane actors only; agents never touch the database)."""
        if self._conn is None:
            raise RuntimeError("this actor runs without a database")
        return self._conn

    async def emit(
        self, message: Message, *, to: str | None = None, expected_version: int | None = None
    ) -> Envelope:
        """Send ``message`` once this handler's work is committed (caused by the handled message)."""
        return await self._writer.emit(message, to=to, expected_version=expected_version)

    async def schedule(
        self,
        message: Message,
        *,
        key: str,
        at: datetime | None = None,
        after: timedelta | None = None,
        to: str | None = None,
    ) -> Envelope:
        """A durable timer: ``message`` is sent at ``at`` (or ``after`` from now), across restarts."""
        if (at is None) == (after is None):
            raise ValueError("give exactly one of at= or after=")
        due = at if at is not None else self.clock.now() + (after or timedelta())
        return await self._writer.schedule(message, at=due, key=key, to=to)

    async def cancel_timer(self, key: str) -> bool:
        return await self._writer.cancel_timer(key)


class Actor:
    """Base class. Subclasses set ``name`` and decorate handlers with ``@handles(MessageType)``.

    ``queue`` is the consumer group: every process running this actor with the same queue competes
    for its messages. ``tick_interval`` > 0 makes the supervisor call ``tick`` periodically.
    """

    name: ClassVar[str] = "actor"
    tick_interval: ClassVar[float] = 0.0
    _handlers: ClassVar[dict[type[Message], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[type[Message], str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                message_type = getattr(value, _HANDLES_ATTR, None)
                if message_type is None:
                    continue
                # An actor assembled from mixins (ADR 0003) must not handle one kind twice: the
                # dict would silently keep only one of the handlers.
                if found.get(message_type, attr) != attr:
                    raise TypeError(
                        f"{cls.__name__}: {message_type.__name__} is handled by both "
                        f"{found[message_type]} and {attr}"
                    )
                found[message_type] = attr
        cls._handlers = found

    @property
    def queue(self) -> str:
        return self.name

    @classmethod
    def handled_types(cls) -> list[type[Message]]:
        return list(cls._handlers)

    def handler_for(self, message: Message) -> HandlerFn | None:
        attr = self._handlers.get(type(message))
        return None if attr is None else getattr(self, attr)

    def route(self, message: Message, routing_key: str) -> HandlerFn | None:
        """The handler of a delivery; an actor serving several addresses overrides this to pick by
        the routing key (one consumer for many fake compute hosts)."""
        return self.handler_for(message)

    def order_key(self, routing_key: str) -> str | None:
        """Deliveries of one batch with different keys may be handled concurrently (each key's in
        order); None, the default, handles the whole batch in delivery order. Only for actors whose
        handlers do not use the database connection (agents)."""
        return None

    def bindings(self) -> list[Binding]:
        """By default: every handled event by kind, every handled command by kind."""
        result: list[Binding] = []
        for message_type in self.handled_types():
            if issubclass(message_type, Event):
                result.append(Binding(EVENTS, message_type.message_kind()))
            elif issubclass(message_type, Command):
                result.append(Binding(COMMANDS, message_type.message_kind()))
        return result

    def readiness(self) -> dict[str, bool]:
        """Per-capability readiness reported in heartbeats; override to say more."""
        return {"consuming": True}

    async def close(self) -> None:
        """Release what the actor holds (a hypervisor connection); called once it has stopped."""

    async def tick(self, ctx: Context) -> None:
        """Periodic work (a sweep, a reconciliation) in its own unit of work."""
