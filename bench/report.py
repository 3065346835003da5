"""Plain-text output: the results table, the targets with PASS/MISS, and per-path notes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.stats import Result

COLUMNS = ("path", "events", "seconds", "events/s", "p50 ms", "p99 ms")


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _row(result: Result) -> tuple[str, ...]:
    if result.error is not None:
        return (f"{result.path} (FAILED)", "-", "-", "-", "-", "-")
    path = result.path if result.complete else f"{result.path} (INCOMPLETE)"
    return (
        path,
        f"{result.events:,}",
        f"{result.seconds:.2f}",
        f"{result.rate:,.0f}",
        _ms(result.p50_ms),
        _ms(result.p99_ms),
    )


def _align(rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


LEGEND = (
    "latency: aiostack rows from emit (paced: the instant the event was due) to the consumer's\n"
    "inbox commit; in sustained rows that is mostly waiting behind the backlog. aio-pika rows: from\n"
    "publish to the consumer callback. asyncpg rows: one transaction of a batch."
)


def table(results: Sequence[Result]) -> str:
    rows = [COLUMNS, *(_row(r) for r in results)]
    lines = _align(rows)
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([lines[0], rule, *lines[1:], "", LEGEND])


@dataclass(frozen=True)
class Target:
    """A goal on one result: ``check`` says whether the result meets it."""

    name: str
    key: str
    goal: str
    measure: Callable[[Result], str]
    check: Callable[[Result], bool]


TARGETS = (
    Target(
        "AMQP path, sustained",
        "amqp.throughput",
        ">= 3,000 events/s",
        lambda r: f"{r.rate:,.0f} events/s",
        lambda r: r.complete and r.rate >= 3000,
    ),
    Target(
        "AMQP path, p99 at 1,000 events/s",
        "amqp.paced",
        "p99 < 50 ms",
        lambda r: f"p99 {_ms(r.p99_ms)} ms at {r.rate:,.0f} events/s",
        lambda r: r.complete and r.p99_ms < 50 and r.rate >= 0.95 * 1000,
    ),
    Target(
        "in-process path, sustained",
        "inproc.throughput",
        ">= 10,000 events/s",
        lambda r: f"{r.rate:,.0f} events/s",
        lambda r: r.complete and r.rate >= 10_000,
    ),
)


def targets(results: Sequence[Result]) -> str:
    """One row per target and matching result (``amqp.paced`` matches ``amqp.paced.1``, ...)."""
    rows: list[tuple[str, ...]] = [("target", "goal", "measured", "")]
    for target in TARGETS:
        matching = [r for r in results if r.key == target.key or r.key.startswith(f"{target.key}.")]
        if not matching:
            rows.append((target.name, target.goal, "not run", "-"))
        for result in matching:
            variant = result.key[len(target.key) + 1 :]
            name = f"{target.name} ({variant} ev/tx)" if variant else target.name
            if result.error is not None:
                rows.append((name, target.goal, "failed", "MISS"))
                continue
            verdict = "PASS" if target.check(result) else "MISS"
            rows.append((name, target.goal, target.measure(result), verdict))
    lines = _align(rows, left=3)
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([lines[0], rule, *lines[1:]])


def notes(results: Sequence[Result]) -> str:
    """Each path's notes (stage counters, CPU split, failures) under its name."""
    blocks = []
    for result in results:
        lines = [n for n in result.notes if n] + (
            [f"FAILED: {result.error}"] if result.error else []
        )
        if lines:
            blocks.append("\n".join([f"{result.path}:", *(f"  - {line}" for line in lines)]))
    return "\n".join(blocks)
