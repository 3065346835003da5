"""The event log: per-stream versions with optimistic concurrency, written with the outbox."""

from __future__ import annotations

import asyncio

import pytest

from cloud.store.db import Store
from cloud.store.writes import ConcurrencyError
from tests.messages import Bump, Pinged


async def test_events_and_outbox_commit_together_or_not_at_all(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.unit(source="test") as uow:
            await uow.emit(Pinged(stream="x", n=1))
            raise RuntimeError("request failed after emitting")
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 0
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    async with store.unit(source="test") as uow:
        await uow.emit(Pinged(stream="x", n=1))
        await uow.emit(Bump(counter="c"))
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 1, "commands are not events"
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 2


async def test_expected_version_is_enforced(store: Store) -> None:
    async with store.unit(source="test") as uow:
        await uow.emit(Pinged(stream="acct", n=1), expected_version=0)
        await uow.emit(Pinged(stream="acct", n=2), expected_version=1)
    with pytest.raises(ConcurrencyError, match="not at version 1"):
        async with store.unit(source="test") as uow:
            await uow.emit(Pinged(stream="acct", n=3), expected_version=1)
    with pytest.raises(ConcurrencyError):
        async with store.unit(source="test") as uow:
            await uow.emit(Pinged(stream="acct", n=3), expected_version=0)
    async with store.unit(source="test") as uow:
        await uow.emit(Pinged(stream="acct", n=3), expected_version=2)
        await uow.emit(Pinged(stream="acct", n=4))
    rows = await store.pool.fetch(
        "SELECT stream_version, body->>'n' AS n FROM events WHERE stream_id = 'test.ping:acct'"
        " ORDER BY seq"
    )
    assert [(r["stream_version"], r["n"]) for r in rows] == [(1, "1"), (2, "2"), (3, "3"), (4, "4")]


async def test_concurrent_writers_to_one_stream_get_distinct_versions(store: Store) -> None:
    async def write(n: int) -> None:
        async with store.unit(source="test") as uow:
            await uow.emit(Pinged(stream="hot", n=n))
            await uow.emit(Pinged(stream="hot", n=n))

    await asyncio.gather(*(write(n) for n in range(20)))
    versions = [
        r["stream_version"]
        for r in await store.pool.fetch(
            "SELECT stream_version FROM events WHERE stream_id = 'test.ping:hot' ORDER BY seq"
        )
    ]
    assert versions == list(range(1, 41))


async def test_envelope_is_kept_with_the_event(store: Store) -> None:
    async with store.unit(source="api@node1") as uow:
        first = await uow.emit(Pinged(stream="e", n=1))
    row = await store.pool.fetchrow("SELECT * FROM events")
    assert row["id"] == first.id and row["correlation_id"] == first.id
    assert row["source"] == "api@node1" and row["kind"] == "test.pinged" and row["v"] == 1


async def test_writers_sharing_streams_in_different_orders_do_not_deadlock(store: Store) -> None:
    streams = [f"shared{i}" for i in range(16)]

    async def write(rotation: int) -> None:
        for _ in range(25):
            async with store.unit(source="test") as uow:
                for stream in streams[rotation:] + streams[:rotation]:
                    await uow.emit(Pinged(stream=stream, n=rotation))

    await asyncio.wait_for(asyncio.gather(*(write(r * 4) for r in range(4))), 60)
    counts = await store.pool.fetch(
        "SELECT version FROM streams WHERE stream_id LIKE 'test.ping:shared%'"
    )
    assert sorted(r["version"] for r in counts) == [100] * 16
