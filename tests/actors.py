"""Actors used by the runtime tests: their effects are rows we can count."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from cloud.runtime.actor import Actor, Context, handles
from tests.messages import Bump, Pinged

COUNTERS_DDL = """CREATE TABLE IF NOT EXISTS counters (name text PRIMARY KEY, value int NOT NULL);
                  CREATE TABLE IF NOT EXISTS pings (seq serial, stream text, n int)"""


class CounterActor(Actor):
    """Adds one to ``counters[counter]`` per Bump, and emits a Pinged; can be told to fail."""

    name: ClassVar[str] = "counter"

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()

    @handles(Bump)
    async def bump(self, msg: Bump, ctx: Context) -> None:
        await ctx.conn.execute(
            """INSERT INTO counters VALUES ($1, 1)
               ON CONFLICT (name) DO UPDATE SET value = counters.value + 1""",
            msg.counter,
        )
        if self.failures[ctx.envelope.id if ctx.envelope else ""] < msg.fail_times:
            self.failures[ctx.envelope.id if ctx.envelope else ""] += 1
            raise RuntimeError(f"told to fail {msg.fail_times} times")
        await ctx.emit(Pinged(stream=msg.counter, n=0))


class PingRecorder(Actor):
    """Records every Pinged in arrival order."""

    name: ClassVar[str] = "pings"

    @handles(Pinged)
    async def record(self, msg: Pinged, ctx: Context) -> None:
        await ctx.conn.execute("INSERT INTO pings (stream, n) VALUES ($1, $2)", msg.stream, msg.n)
