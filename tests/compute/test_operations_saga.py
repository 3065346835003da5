"""Operations on existing instances over both buses: API step → agent → driver → conductor.

The API half runs as the servers API runs it (:mod:`cloud.compute.api.server_lifecycle`, without
HTTP); the agent runs in its own supervisor without a database. Each kind of operation also misses
its deadline once: the instance must end consistent (task state cleared, claims right) with the
action's event recorded as an error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from agents.compute.agent import ComputeAgent
from agents.compute.driver import InstanceInfo, InstanceSpec, PowerState
from agents.compute.fake import FakeDriver
from cloud.api.errors import ApiError
from cloud.compute.api import server_store
from cloud.compute.api.instance_actions import fold
from cloud.compute.api.server_lifecycle import Caller, begin, check_state, lock_server
from cloud.compute.api.server_resize import check_quota, claim_move
from cloud.conductor import states
from cloud.conductor.actor import Conductor
from cloud.runtime.bus import Bus
from cloud.scheduler.actor import Scheduler
from cloud.store.db import Store
from schemas.compute import FlavorSpec
from tests.compute.test_build_saga import TINY, add_host, boot, instance, status_is, used
from tests.conftest import eventually, quick_options, running_supervisor

SMALL = FlavorSpec(id="2", name="m1.small", vcpus=2, ram_mb=1024, disk_gb=2)


class SlowDriver(FakeDriver):
    """A fake whose operations take ``delay`` seconds (0: at once), to miss deadlines."""

    delay: float = 0.0

    async def _wait(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    async def reboot(self, instance_id: str, *, hard: bool = False) -> None:
        await self._wait()
        await super().reboot(instance_id, hard=hard)

    async def power_off(self, instance_id: str) -> None:
        await self._wait()
        await super().power_off(instance_id)

    async def power_on(self, instance_id: str) -> None:
        await self._wait()
        await super().power_on(instance_id)

    async def pause(self, instance_id: str) -> None:
        await self._wait()
        await super().pause(instance_id)

    async def unpause(self, instance_id: str) -> None:
        await self._wait()
        await super().unpause(instance_id)

    async def suspend(self, instance_id: str) -> None:
        await self._wait()
        await super().suspend(instance_id)

    async def resume(self, instance_id: str) -> None:
        await self._wait()
        await super().resume(instance_id)

    async def resize(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        await self._wait()
        return await super().resize(spec, power_on=power_on)

    async def confirm_resize(self, instance_id: str) -> None:
        await self._wait()
        await super().confirm_resize(instance_id)

    async def revert_resize(self, instance_id: str, flavor: FlavorSpec) -> InstanceInfo:
        await self._wait()
        return await super().revert_resize(instance_id, flavor)

    async def rebuild(self, spec: InstanceSpec, *, power_on: bool) -> InstanceInfo:
        await self._wait()
        return await super().rebuild(spec, power_on=power_on)


@asynccontextmanager
async def cloud(bus: Bus, store: Store, driver: FakeDriver) -> AsyncIterator[None]:
    agent = ComputeAgent("node-1", driver)
    async with (
        running_supervisor(bus, None, [agent], quick_options(host="node-1")),
        running_supervisor(bus, store, [Scheduler(), Conductor()], quick_options(timer_poll_s=0.1)),
    ):
        yield


async def operate(
    store: Store,
    server: str,
    operation: str,
    *,
    deadline_s: float = 30.0,
    request_id: str | None = None,
    new_flavor: FlavorSpec | None = None,
    same_host: bool = True,
) -> str:
    """What the API does for ``operation``; the request id of the action."""
    kind = states.OPERATIONS[operation]
    rid = request_id or f"req-{operation}-{server[:8]}"
    async with store.unit(source="test") as uow:
        row = await lock_server(uow, server, None)
        check_state(row, kind)
        command: dict[str, Any] = {}
        host = None
        if operation == "resize":
            assert new_flavor is not None
            old = FlavorSpec.model_validate_json(row["flavor"])
            await check_quota(uow, row["project_id"], old, new_flavor)
            host = await claim_move(uow, row, old, new_flavor, same_host=same_host)
            command = {"flavor": new_flavor, "image_ref": row["image_ref"], "power_on": True}
        elif operation in ("confirm_resize", "revert_resize"):
            moved = await uow.conn.fetchrow(
                "SELECT source_host, dest_host, old_flavor::text AS old_flavor"
                " FROM cmp_move_claims WHERE instance_id = $1",
                server,
            )
            assert moved is not None
            host = moved["source_host"]  # both go to the host the instance came from
            if operation == "revert_resize":
                command = {"flavor": FlavorSpec.model_validate_json(moved["old_flavor"])}
            elif moved["source_host"] != moved["dest_host"]:
                command = {"source_host": moved["source_host"]}
        elif operation == "rebuild":
            command = {"flavor": FlavorSpec.model_validate_json(row["flavor"]), "image_ref": "i2"}
        await begin(uow, row, kind, Caller(rid, "p1", "u1"), deadline_s, host=host, **command)
    return rid


async def state(store: Store, server: str) -> tuple[str, str | None, int]:
    got = await instance(store, server)
    return got["vm_state"], got["task_state"], got["power_state"]


async def action(store: Store, server: str, request_id: str) -> Any:
    rows = await store.pool.fetch(
        """SELECT kind, body::text AS body, correlation_id, occurred_at FROM events
           WHERE stream_id = $1 ORDER BY seq""",
        f"instance:{server}",
    )
    actions = fold(list(rows), {"project_id": "p1", "user_id": "u1"})
    return next(a for a in actions if a.request_id == request_id)


async def settled(store: Store, server: str, request_id: str) -> bool:
    act = await action(store, server, request_id)
    return bool(act.steps) and all(step.finish_time is not None for step in act.steps)


async def until_settled(store: Store, server: str, request_id: str) -> None:
    await eventually(lambda: settled(store, server, request_id))


async def active_server(bus: Bus, store: Store) -> str:
    server = await boot(store)
    await eventually(lambda: status_is(store, server, "ACTIVE"))
    return server


async def test_lifecycle_operations_follow_the_driver(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with cloud(bus, store, driver):
        server = await active_server(bus, store)
        steps = [
            ("reboot_soft", ("active", None, 1)),
            ("pause", ("paused", None, 3)),
            ("unpause", ("active", None, 1)),
            ("suspend", ("suspended", None, 7)),
            ("resume", ("active", None, 1)),
            ("stop", ("stopped", None, 4)),
            ("reboot_hard", ("active", None, 1)),
        ]
        for operation, expected in steps:
            rid = await operate(store, server, operation)
            await until_settled(store, server, rid)
            assert await state(store, server) == expected, operation
            act = await action(store, server, rid)
            kind = states.OPERATIONS[operation]
            assert act.action == kind.action
            assert [(s.event, s.result, s.host) for s in act.steps] == [
                (kind.event, "Success", "node-1")
            ]
        assert driver.instances[server].power_state == PowerState.RUNNING
        # Every action of this instance, the build first, each under its own request id.
        rows = await store.pool.fetch(
            """SELECT kind, body::text AS body, correlation_id, occurred_at FROM events
               WHERE stream_id = $1 ORDER BY seq""",
            f"instance:{server}",
        )
        names = [a.action for a in fold(list(rows), {"project_id": "p1", "user_id": "u1"})]
        assert names == ["create"] + [states.OPERATIONS[o].action for o, _ in steps]


async def test_a_wrong_state_is_refused_with_novas_message(store: Store) -> None:
    await add_host(store, "node-1")
    server = await boot(store)
    await store.pool.execute(
        """UPDATE cmp_instances SET vm_state = 'stopped', task_state = NULL, host = 'node-1'
           WHERE id = $1""",
        server,
    )
    with pytest.raises(ApiError) as refused:
        await operate(store, server, "pause")
    assert refused.value.status == 409
    assert f"Cannot 'pause' instance {server} while it is in vm_state stopped" in str(refused.value)


async def test_resize_holds_both_claims_until_confirm(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1", vcpus=8, ram_mb=8192)
    driver = FakeDriver()
    async with cloud(bus, store, driver):
        server = await active_server(bus, store)
        assert await used(store, "node-1") == (1, 512, 1)
        rid = await operate(store, server, "resize", new_flavor=SMALL)
        assert await status_is(store, server, "RESIZE")
        await eventually(lambda: status_is(store, server, "VERIFY_RESIZE"))
        assert await used(store, "node-1") == (3, 1536, 3)  # old and new claims coexist
        assert driver.instances[server].vcpus == 2
        got = await store.pool.fetchrow(
            "SELECT flavor_id, flavor->>'vcpus' AS vcpus FROM cmp_instances WHERE id = $1", server
        )
        assert got is not None and (got["flavor_id"], got["vcpus"]) == ("2", "2")
        assert (await action(store, server, rid)).steps[0].result == "Success"

        rid = await operate(store, server, "confirm_resize")
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        assert await used(store, "node-1") == (2, 1024, 2)  # only the new flavor's claim
        claim = await store.pool.fetchrow("SELECT * FROM cmp_claims WHERE instance_id = $1", server)
        assert claim is not None and (claim["vcpus"], claim["ram_mb"]) == (2, 1024)
        assert await store.pool.fetchval("SELECT count(*) FROM cmp_move_claims") == 0
        assert server not in driver.resize_backups


async def test_revert_gives_the_new_claim_back_and_the_old_flavor(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1", vcpus=8, ram_mb=8192)
    driver = FakeDriver()
    async with cloud(bus, store, driver):
        server = await active_server(bus, store)
        await operate(store, server, "resize", new_flavor=SMALL)
        await eventually(lambda: status_is(store, server, "VERIFY_RESIZE"))
        await operate(store, server, "revert_resize")
        assert await status_is(store, server, "REVERT_RESIZE")
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        assert await used(store, "node-1") == (1, 512, 1)
        assert driver.instances[server].vcpus == TINY.vcpus
        flavor_id = await store.pool.fetchval(
            "SELECT flavor_id FROM cmp_instances WHERE id = $1", server
        )
        assert flavor_id == TINY.id


async def test_deleting_a_resized_server_releases_both_claims(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1", vcpus=8, ram_mb=8192)
    async with cloud(bus, store, FakeDriver()):
        server = await active_server(bus, store)
        await operate(store, server, "resize", new_flavor=SMALL)
        await eventually(lambda: status_is(store, server, "VERIFY_RESIZE"))
        async with store.unit(source="test") as uow:
            assert await server_store.request_delete(uow, server, None)
        await eventually(lambda: status_is(store, server, "DELETED"))
        assert await used(store, "node-1") == (0, 0, 0)
        assert await store.pool.fetchval("SELECT count(*) FROM cmp_move_claims") == 0


async def test_a_resize_that_fits_no_host_is_refused(store: Store) -> None:
    await add_host(store, "node-1", vcpus=1, ram_mb=512)
    server = await boot(store)
    await store.pool.execute(
        "UPDATE cmp_instances SET vm_state = 'active', task_state = NULL, host = 'node-1'"
        " WHERE id = $1",
        server,
    )
    with pytest.raises(ApiError) as refused:
        await operate(store, server, "resize", new_flavor=SMALL)
    assert refused.value.status == 400 and "No valid host" in str(refused.value)
    assert await store.pool.fetchval("SELECT count(*) FROM cmp_move_claims") == 0


async def test_a_failed_rebuild_is_an_error_with_a_fault(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    async with cloud(bus, store, FakeDriver(fail_images={"i2"})):
        server = await active_server(bus, store)
        rid = await operate(store, server, "rebuild")
        await eventually(lambda: status_is(store, server, "ERROR"))
        fault = json.loads((await instance(store, server))["fault"])
        assert "Rebuild" in fault["message"] and "i2" in fault["message"]
        step = (await action(store, server, rid)).steps[0]
        assert step.result == "Error" and step.error is not None


# (operation, how to get there first, the state a missed deadline leaves)
DEADLINE_CASES = [
    ("stop", [], ("active", None)),
    ("start", ["stop"], ("stopped", None)),
    ("reboot_soft", [], ("active", None)),
    ("reboot_hard", [], ("active", None)),
    ("pause", [], ("active", None)),
    ("unpause", ["pause"], ("paused", None)),
    ("suspend", [], ("active", None)),
    ("resume", ["suspend"], ("suspended", None)),
    ("resize", [], ("active", None)),
    ("confirm_resize", ["resize"], ("active", None)),
    ("revert_resize", ["resize"], ("resized", None)),
    ("rebuild", [], ("active", None)),
]


@pytest.mark.parametrize(("operation", "before", "after"), DEADLINE_CASES)
async def test_a_missed_deadline_leaves_the_instance_consistent(
    bus: Bus, store: Store, operation: str, before: list[str], after: tuple[str, None]
) -> None:
    await add_host(store, "node-1", vcpus=8, ram_mb=8192)
    driver = SlowDriver()
    async with cloud(bus, store, driver):
        server = await active_server(bus, store)
        for step in before:
            rid = await operate(store, server, step, new_flavor=SMALL)
            await until_settled(store, server, rid)
        driver.delay = 1.0
        rid = await operate(store, server, operation, deadline_s=0.3, new_flavor=SMALL)
        await until_settled(store, server, rid)
        assert (await state(store, server))[:2] == after
        assert await status_is(store, server, states.status_of(*after))
        step = (await action(store, server, rid)).steps[0]
        assert step.result == "Error" and "timed out" in (step.error or "")
        if operation == "resize":  # the move claim was given back
            assert await used(store, "node-1") == (1, 512, 1)
        if operation == "confirm_resize":  # the confirm completed without the host
            assert await used(store, "node-1") == (2, 1024, 2)
        await asyncio.sleep(1.2)  # the late outcome changes nothing
        assert (await state(store, server))[:2] == after
        if operation == "resize":  # and the late resize was undone on the host
            await eventually(lambda: driver.instances[server].vcpus == TINY.vcpus)


@asynccontextmanager
async def two_hosts(bus: Bus, store: Store) -> AsyncIterator[dict[str, FakeDriver]]:
    drivers = {"node-1": FakeDriver(), "node-2": FakeDriver()}
    async with (
        running_supervisor(
            bus, None, [ComputeAgent("node-1", drivers["node-1"])], quick_options(host="node-1")
        ),
        running_supervisor(
            bus, None, [ComputeAgent("node-2", drivers["node-2"])], quick_options(host="node-2")
        ),
        running_supervisor(bus, store, [Scheduler(), Conductor()], quick_options(timer_poll_s=0.1)),
    ):
        yield drivers


@pytest.mark.parametrize("finish", ["confirm_resize", "revert_resize"])
async def test_a_resize_between_hosts(bus: Bus, store: Store, finish: str) -> None:
    await add_host(store, "node-1", vcpus=8, ram_mb=8192)
    await add_host(store, "node-2", vcpus=8, ram_mb=8192)
    async with two_hosts(bus, store) as drivers:
        server = await active_server(bus, store)
        source = (await instance(store, server))["host"]
        dest = "node-2" if source == "node-1" else "node-1"
        await operate(store, server, "resize", new_flavor=SMALL, same_host=False)
        await eventually(lambda: status_is(store, server, "VERIFY_RESIZE"))
        assert (await instance(store, server))["host"] == dest
        assert await used(store, source) == (1, 512, 1)
        assert await used(store, dest) == (2, 1024, 2)
        assert drivers[dest].instances[server].vcpus == 2

        rid = await operate(store, server, finish)
        await until_settled(store, server, rid)
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        kept, gone = (dest, source) if finish == "confirm_resize" else (source, dest)
        assert (await instance(store, server))["host"] == kept
        assert await used(store, gone) == (0, 0, 0)
        await eventually(lambda: server not in drivers[gone].instances)
        assert server in drivers[kept].instances
        assert await store.pool.fetchval("SELECT count(*) FROM cmp_move_claims") == 0


async def test_a_resize_beyond_the_cores_quota_is_refused(store: Store) -> None:
    await add_host(store, "node-1", vcpus=8, ram_mb=8192)
    server = await boot(store)
    await store.pool.execute(
        "UPDATE cmp_instances SET vm_state = 'active', task_state = NULL, host = 'node-1'"
        " WHERE id = $1",
        server,
    )
    await store.pool.execute(
        "INSERT INTO cmp_quotas (project_id, resource, hard_limit) VALUES ('p1', 'cores', 1)"
    )
    with pytest.raises(ApiError) as refused:
        await operate(store, server, "resize", new_flavor=SMALL)
    assert refused.value.status == 403 and "Quota exceeded for cores" in str(refused.value)
    assert (await instance(store, server))["task_state"] is None
