"""Reading the event log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from cloud.runtime.bus import topic_matches

_COLUMNS = """seq, id, stream_id, stream_version, kind, v, body::text AS body, correlation_id,
              causation_id, occurred_at, source"""
# A sequence number is taken at insert but becomes visible at commit, so a lower seq can appear
# after a higher one; following re-reads this many numbers behind the highest seen.
_LATE_WINDOW = 1000


def _as_dict(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(row)
    event["body"] = json.loads(event["body"])
    return event


async def tail_events(
    pool: asyncpg.Pool,
    *,
    pattern: str = "#",
    limit: int = 20,
    follow: bool = False,
    poll_s: float = 0.5,
) -> AsyncIterator[dict[str, Any]]:
    """The last ``limit`` events whose kind matches the topic ``pattern``, oldest first; then,
    with ``follow``, every new one once committed."""
    matching: list[asyncpg.Record] = []
    before = None
    while len(matching) < limit:
        page = await pool.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE seq < coalesce($1, 9223372036854775807)"
            " ORDER BY seq DESC LIMIT 1000",
            before,
        )
        if not page:
            break
        matching += [r for r in page if topic_matches(pattern, r["kind"])]
        before = page[-1]["seq"]
    shown = sorted(matching[:limit], key=lambda r: r["seq"])
    for row in shown:
        yield _as_dict(row)
    floor = highest = await pool.fetchval("SELECT coalesce(max(seq), 0) FROM events")
    seen: set[int] = set()
    while follow:
        await asyncio.sleep(poll_s)
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq",
            max(floor, highest - _LATE_WINDOW),
        )
        for row in rows:
            seq = row["seq"]
            if seq in seen:
                continue
            seen.add(seq)
            if topic_matches(pattern, row["kind"]):
                yield _as_dict(row)
        if rows:
            highest = max(highest, rows[-1]["seq"])
            seen = {s for s in seen if s > highest - _LATE_WINDOW}
