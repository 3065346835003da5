"""The sink actor: consumes ``bench.tick`` and does nothing but note each event's send stamp.

Its handler is deliberately empty of business work, so the pipeline measures the runtime itself:
decode, inbox insert, handler call, outbox/event flush (none here), commit, ack.
"""

from __future__ import annotations

from typing import ClassVar

from bench.instrument import Recorder
from bench.messages import Tick
from cloud.runtime.actor import Actor, Context, handles


class Sink(Actor):
    """Records every ``Tick`` with the recorder; the latency is taken when the inbox commits."""

    name: ClassVar[str] = "bench_sink"

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    @handles(Tick)
    async def on_tick(self, msg: Tick, ctx: Context) -> None:
        if ctx.envelope is not None:
            self._recorder.handled(ctx.envelope.id, msg.sent)
