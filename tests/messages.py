"""Message types used only by the tests (registered under the ``test.`` prefix)."""

from __future__ import annotations

from typing import ClassVar, Literal

from schemas import Command, Event


class Pinged(Event):
    """v1: a test event on stream ``test.pinged:<stream>``."""

    kind: Literal["test.pinged"] = "test.pinged"
    v: Literal[1] = 1
    stream_prefix: ClassVar[str | None] = "test.ping"
    stream_key: ClassVar[str | None] = "stream"
    stream: str = "s"
    n: int


class Bump(Command):
    """v1: add one to a counter row."""

    kind: Literal["test.bump"] = "test.bump"
    v: Literal[1] = 1
    counter: str
    fail_times: int = 0
