"""One measured path's result, and the percentiles the table shows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Result:
    """A row of the table. ``latencies`` are in seconds; ``notes`` are printed under the table."""

    path: str
    key: str  # what the targets look for, e.g. "amqp.throughput"
    events: int
    seconds: float
    latencies: Sequence[float] = ()
    notes: list[str] = field(default_factory=list)
    complete: bool = True
    error: str | None = None  # the path raised: nothing was measured

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return 1000 * percentile(self.latencies, 50)

    @property
    def p99_ms(self) -> float:
        return 1000 * percentile(self.latencies, 99)
