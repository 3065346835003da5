"""Quotas at boot: Nova's arithmetic and messages, and no race under concurrent creates."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cloud.api.errors import ApiError
from cloud.compute import boot_policy, quotas
from cloud.compute.api import server_store
from cloud.store.db import Store
from schemas.compute import FlavorSpec

SMALL = FlavorSpec(id="2", name="m1.small", vcpus=2, ram_mb=2048, disk_gb=20)
LIMITS = {**quotas.DEFAULTS}


def test_allowed_count_takes_what_fits_between_min_and_max() -> None:
    used = {"instances": 7, "cores": 0, "ram": 0}
    assert boot_policy.allowed_count(SMALL, 1, 5, used, LIMITS) == 3
    assert boot_policy.allowed_count(SMALL, 3, 3, used, LIMITS) == 3
    cores = {"instances": 0, "cores": 16, "ram": 0}
    assert boot_policy.allowed_count(SMALL, 1, 10, cores, LIMITS) == 2  # 4 free cores


def test_too_many_instances_is_novas_403() -> None:
    used = {"instances": 10, "cores": 10, "ram": 5120}
    with pytest.raises(ApiError) as err:
        boot_policy.allowed_count(SMALL, 1, 1, used, LIMITS)
    assert err.value.status == 403
    assert err.value.message == (
        "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
    )


def test_several_resources_over_are_listed_together() -> None:
    used = {"instances": 9, "cores": 19, "ram": 0}
    with pytest.raises(ApiError) as err:
        boot_policy.allowed_count(SMALL, 2, 4, used, LIMITS)
    assert err.value.message == (
        "Quota exceeded for cores, instances: Requested 8, 2-4, but already used 19, 9 "
        "of 20, 10 cores, instances"
    )


def test_unlimited_resources_are_not_checked() -> None:
    limits = {**LIMITS, "instances": -1, "cores": -1, "ram": -1}
    used = {"instances": 1000, "cores": 1000, "ram": 10**6}
    assert boot_policy.allowed_count(SMALL, 1, 50, used, limits) == 50


async def admit(store: Store, **kw: Any) -> int:
    args: dict[str, Any] = {
        "project_id": "p1",
        "user_id": "u1",
        "flavor": SMALL,
        "min_count": 1,
        "max_count": 1,
        "metadata_items": 0,
        "hints": {},
    }
    async with store.pool.acquire() as conn, conn.transaction():
        return await boot_policy.admit(conn, **{**args, **kw})


async def test_metadata_items_over_the_limit_is_403(store: Store) -> None:
    with pytest.raises(ApiError) as err:
        await admit(store, metadata_items=129)
    assert (err.value.status, err.value.message) == (
        403,
        "Maximum number of metadata items exceeds 128",
    )
    assert await admit(store, metadata_items=128) == 1


async def test_group_hints_must_name_a_group_of_the_project(store: Store) -> None:
    with pytest.raises(ApiError) as err:
        await admit(store, hints={"group": "not-a-uuid"})
    assert err.value.status == 400
    missing = str(uuid.uuid4())
    with pytest.raises(ApiError) as err:
        await admit(store, hints={"group": missing})
    assert (err.value.status, err.value.message) == (
        400,
        f"Instance group {missing} could not be found.",
    )


async def test_project_override_and_default_class(store: Store) -> None:
    async with store.pool.acquire() as conn:
        await quotas.set_limits(conn, "", {"instances": 4}, class_name="default")
        assert (await quotas.limits_of(conn, "p1"))["instances"] == 4
        await quotas.set_limits(conn, "p1", {"instances": 2})
        assert (await quotas.limits_of(conn, "p1"))["instances"] == 2
        assert (await quotas.limits_of(conn, "p2"))["instances"] == 4
        await quotas.revert(conn, "p1")
        assert (await quotas.limits_of(conn, "p1"))["instances"] == 4


async def boot_one(store: Store, start: asyncio.Event) -> bool:
    """One API boot: admit then insert, in one transaction (as the servers API does)."""
    await start.wait()
    server_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": server_id,
        "name": "vm",
        "project_id": "p1",
        "user_id": "u1",
        "image_ref": "img",
        "metadata": {},
        "key_name": None,
        "user_data": None,
        "availability_zone": None,
        "idempotency_key": None,
    }
    try:
        async with store.unit(source="test") as uow:
            await boot_policy.admit(
                uow.conn,
                project_id="p1",
                user_id="u1",
                flavor=SMALL,
                min_count=1,
                max_count=1,
                metadata_items=0,
                hints={},
            )
            await asyncio.sleep(0.01)  # widen the window a racy check would lose in
            await server_store.insert(uow, values, SMALL)
    except ApiError as exc:
        assert exc.status == 403
        return False
    return True


async def test_concurrent_boots_never_pass_the_quota(store: Store) -> None:
    async with store.pool.acquire() as conn:
        await quotas.set_limits(conn, "p1", {"instances": 5})
    start = asyncio.Event()
    tasks = [asyncio.create_task(boot_one(store, start)) for _ in range(20)]
    start.set()
    results = await asyncio.gather(*tasks)
    assert sum(results) == 5
    count = await store.pool.fetchval(
        "SELECT count(*) FROM cmp_instances WHERE project_id = 'p1' AND deleted_at IS NULL"
    )
    assert count == 5
