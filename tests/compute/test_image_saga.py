"""Snapshots, shelving and console output over both buses: the conductor, a compute agent on the
fake driver, and a small stand-in for the image service's data API (the agent uploads over HTTP).

What the gateway writes is done here with the same functions it uses (``start_snapshot``,
``boot_shelved``), so the saga is tested without HTTP in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agents.compute.agent import ComputeAgent, address_of
from agents.compute.fake import FakeDriver
from cloud.compute.api import server_console, server_shelve, server_store
from cloud.compute.api.server_images import INSTANCE_COLUMNS, start_snapshot
from cloud.conductor import states
from cloud.conductor.actor import Conductor
from cloud.conductor.images import CONSOLE_CHANNEL, store_console_reply
from cloud.image import repo as image_repo
from cloud.runtime.bus import Bus
from cloud.scheduler.actor import Scheduler
from cloud.store.db import Store
from schemas.compute_images import ConsoleOutputReady, GetConsoleOutput
from tests.compute.test_build_saga import add_host, boot, instance, status_is, used
from tests.conftest import eventually, quick_options, running_supervisor


@dataclass
class ImageServiceStub:
    """Answers the agent's PATCH and PUT like the image service, and marks the image active."""

    store: Store
    fail_upload: bool = False
    upload_delay_s: float = 0.0
    uploads: dict[str, bytes] = field(default_factory=dict)
    patches: dict[str, Any] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    url: str = ""

    async def patch(self, request: web.Request) -> web.Response:
        self.tokens.append(request.headers.get("X-Auth-Token", ""))
        self.patches[request.match_info["id"]] = await request.json()
        return web.json_response({})

    async def put(self, request: web.Request) -> web.Response:
        image_id = request.match_info["id"]
        data = await request.read()
        await asyncio.sleep(self.upload_delay_s)
        if self.fail_upload:
            return web.json_response({"message": "store broken"}, status=503)
        if await self.store.pool.fetchval(
            "SELECT deleted_at IS NOT NULL FROM img_images WHERE id = $1", image_id
        ):
            self.refused.append(image_id)
            return web.json_response({"message": "gone"}, status=404)
        self.uploads[image_id] = data
        await self.store.pool.execute(
            "UPDATE img_images SET status = 'active', size = $2 WHERE id = $1", image_id, len(data)
        )
        return web.Response(status=204)


@asynccontextmanager
async def image_service(store: Store, **options: Any) -> AsyncIterator[ImageServiceStub]:
    stub = ImageServiceStub(store, **options)
    app = web.Application()
    app.router.add_patch("/image/v2/images/{id}", stub.patch)
    app.router.add_put("/image/v2/images/{id}/file", stub.put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


@asynccontextmanager
async def cloud(
    bus: Bus, store: Store, driver: FakeDriver, conductor: Conductor | None = None
) -> AsyncIterator[None]:
    async with (
        running_supervisor(bus, None, [ComputeAgent("node-1", driver)], quick_options()),
        running_supervisor(
            bus, store, [Scheduler(), conductor or Conductor()], quick_options(timer_poll_s=0.1)
        ),
    ):
        yield


async def active_server(store: Store) -> str:
    server = await boot(store)
    await eventually(lambda: status_is(store, server, "ACTIVE"))
    return server


async def request_snapshot(
    store: Store,
    stub: ImageServiceStub,
    server: str,
    *,
    shelve: bool = False,
    deadline_s: float = 30,
) -> str:
    """What createImage (or shelve) writes: a queued image, the task state, the command."""
    image_id = str(uuid.uuid4())
    async with store.unit(source="test") as uow:
        row = await uow.conn.fetchrow(
            f"SELECT {INSTANCE_COLUMNS} FROM cmp_instances WHERE id = $1 FOR UPDATE", server
        )
        await image_repo.insert(
            uow.conn,
            {
                "id": image_id,
                "name": "snap",
                "owner": "p1",
                "disk_format": "qcow2",
                "container_format": "bare",
            },
        )
        await start_snapshot(
            uow,
            row,
            image_id,
            purpose="shelve" if shelve else "snapshot",
            task_state=states.SHELVING if shelve else states.IMAGE_SNAPSHOT,
            gateway_url=stub.url,
            token="user-token",
            deadline_s=deadline_s,
        )
    return image_id


async def image_status(store: Store, image_id: str) -> str:
    return str(await store.pool.fetchval("SELECT status FROM img_images WHERE id = $1", image_id))


async def kinds(store: Store, server: str) -> list[str]:
    rows = await store.pool.fetch(
        "SELECT kind FROM events WHERE stream_id = $1 ORDER BY seq", f"instance:{server}"
    )
    return [r["kind"] for r in rows]


async def test_snapshot_passes_novas_task_states_and_uploads_the_disk(
    bus: Bus, store: Store
) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with image_service(store, upload_delay_s=0.5) as stub, cloud(bus, store, driver):
        server = await active_server(store)
        driver.snapshot_latency_s = 0.5
        async with watching(store, server) as seen:
            image_id = await request_snapshot(store, stub, server)
            await eventually(lambda: image_status_is(store, image_id, "active"))
            await eventually(lambda: task_state_is(store, server, None))
    assert stub.uploads[image_id] == b"aiostack fake disk; base image img\n"
    assert stub.tokens == ["user-token"]
    assert {op["path"]: op["value"] for op in stub.patches[image_id]} == {
        "/disk_format": "raw",
        "/container_format": "bare",
    }
    got = await instance(store, server)
    assert (got["vm_state"], got["status"], got["power_state"]) == ("active", "ACTIVE", 1)
    # Nova's order; the short pending-upload step may fall between two polls.
    order = ["image_snapshot", "image_pending_upload", "image_uploading", None]
    assert "image_snapshot" in seen and "image_uploading" in seen and seen[-1] is None
    assert [order.index(t) for t in seen] == sorted(order.index(t) for t in seen)
    assert driver.snapshots == {}  # the staged copy is gone once uploaded


@contextlib.asynccontextmanager
async def watching(store: Store, server: str) -> AsyncIterator[list[str | None]]:
    """The task states the server shows, polled every 20 ms (each change once)."""
    seen: list[str | None] = []

    async def poll() -> None:
        while True:
            task = (await instance(store, server))["task_state"]
            if not seen or seen[-1] != task:
                seen.append(task)
            await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    last = (await instance(store, server))["task_state"]
    if seen[-1] != last:
        seen.append(last)
    while seen and seen[0] is None:  # before the request
        seen.pop(0)


async def test_a_failed_upload_deletes_the_image_and_reverts_the_task(
    bus: Bus, store: Store
) -> None:
    await add_host(store, "node-1")
    async with image_service(store, fail_upload=True) as stub, cloud(bus, store, FakeDriver()):
        server = await active_server(store)
        image_id = await request_snapshot(store, stub, server)
        await eventually(lambda: image_status_is(store, image_id, "deleted"))
        await eventually(lambda: task_state_is(store, server, None))
    assert (await instance(store, server))["status"] == "ACTIVE"
    body = await store.pool.fetchval(
        """SELECT body FROM events WHERE stream_id = $1
           AND kind = 'compute.instance.action_event_finished'""",
        f"instance:{server}",
    )
    finished = json.loads(body)
    assert finished["event"] == "compute_snapshot_instance"
    assert "503" in finished["error"]


async def test_a_missed_snapshot_deadline_deletes_the_image(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver(snapshot_latency_s=2.0)
    async with image_service(store) as stub, cloud(bus, store, driver):
        server = await active_server(store)
        image_id = await request_snapshot(store, stub, server, deadline_s=0.3)
        await eventually(lambda: image_status_is(store, image_id, "deleted"))
        got = await instance(store, server)
        assert (got["status"], got["task_state"]) == ("ACTIVE", None)
        # The late snapshot's report changes nothing, and its upload is refused or ignored.
        await eventually(lambda: image_id in stub.refused)
        await asyncio.sleep(0.3)  # the host's failure report, too, changes nothing
    assert (await instance(store, server))["task_state"] is None
    assert await image_status(store, image_id) == "deleted"


async def test_shelve_offloads_and_unshelve_boots_from_the_shelved_image(
    bus: Bus, store: Store
) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with image_service(store) as stub, cloud(bus, store, driver):
        server = await active_server(store)
        image_id = await request_snapshot(store, stub, server, shelve=True)
        await eventually(lambda: status_is(store, server, "SHELVED_OFFLOADED"))
        got = await instance(store, server)
        assert (got["host"], got["task_state"], got["power_state"]) == (None, None, 4)
        assert driver.instances == {}
        assert await used(store, "node-1") == (0, 0, 0)
        assert await image_status(store, image_id) == "active"

        async with store.unit(source="test") as uow:
            row = await uow.conn.fetchrow(
                "SELECT id, name, image_ref FROM cmp_instances WHERE id = $1 FOR UPDATE", server
            )
            await server_shelve.boot_shelved(uow, row, server_shelve.UNSET, None)
        await eventually(lambda: status_is(store, server, "ACTIVE"))
        await eventually(lambda: image_status_is(store, image_id, "deleted"))
    row = await store.pool.fetchrow(
        "SELECT image_ref, shelved_image_id, host FROM cmp_instances WHERE id = $1", server
    )
    assert row is not None
    assert (row["image_ref"], row["shelved_image_id"], row["host"]) == ("img", None, "node-1")
    assert driver.disks[server] == f"aiostack fake disk; base image {image_id}\n".encode()
    assert await used(store, "node-1") == (1, 512, 1)


async def test_a_failed_shelve_leaves_the_server_stopped_and_deletes_the_image(
    bus: Bus, store: Store
) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with image_service(store) as stub, cloud(bus, store, driver):
        server = await active_server(store)
        driver.fail_snapshot = "disk busy"
        image_id = await request_snapshot(store, stub, server, shelve=True)
        await eventually(lambda: image_status_is(store, image_id, "deleted"))
        await eventually(lambda: task_state_is(store, server, None))
    got = await instance(store, server)
    assert (got["vm_state"], got["status"], got["power_state"]) == ("stopped", "SHUTOFF", 4)
    assert got["host"] == "node-1" and await used(store, "node-1") == (1, 512, 1)


async def test_deleting_a_shelved_server_deletes_its_image(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    async with image_service(store) as stub, cloud(bus, store, FakeDriver()):
        server = await active_server(store)
        image_id = await request_snapshot(store, stub, server, shelve=True)
        await eventually(lambda: status_is(store, server, "SHELVED_OFFLOADED"))
        async with store.unit(source="test") as uow:
            assert await server_store.request_delete(uow, server, "p1")
        await eventually(lambda: image_status_is(store, image_id, "deleted"))
    assert (await instance(store, server))["deleted_at"] is not None


async def test_an_unshelve_without_a_host_stays_shelved_offloaded(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    async with image_service(store) as stub, cloud(bus, store, FakeDriver()):
        server = await active_server(store)
        image_id = await request_snapshot(store, stub, server, shelve=True)
        await eventually(lambda: status_is(store, server, "SHELVED_OFFLOADED"))
        await store.pool.execute("UPDATE cmp_hosts SET enabled = false")
        async with store.unit(source="test") as uow:
            row = await uow.conn.fetchrow(
                "SELECT id, name, image_ref FROM cmp_instances WHERE id = $1 FOR UPDATE", server
            )
            await server_shelve.boot_shelved(uow, row, server_shelve.UNSET, None)
        await eventually(lambda: has_event(store, server, "compute.instance.errored"))
        await eventually(lambda: task_state_is(store, server, None))
    got = await instance(store, server)
    assert (got["status"], got["host"]) == ("SHELVED_OFFLOADED", None)
    row = await store.pool.fetchrow(
        "SELECT image_ref, shelved_image_id FROM cmp_instances WHERE id = $1", server
    )
    assert row is not None and (row["image_ref"], row["shelved_image_id"]) == ("img", image_id)
    assert await image_status(store, image_id) == "active"  # kept for the next try


async def test_a_shelved_server_kept_on_its_host_is_offloaded_later_or_powered_on(
    bus: Bus, store: Store
) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    later, never = Conductor(shelved_offload_time=0.5), Conductor(shelved_offload_time=-1)
    async with image_service(store) as stub:
        async with cloud(bus, store, driver, later):
            first = await active_server(store)
            await request_snapshot(store, stub, first, shelve=True)
            await eventually(lambda: status_is(store, first, "SHELVED"))
            assert (await instance(store, first))["host"] == "node-1"
            await eventually(lambda: status_is(store, first, "SHELVED_OFFLOADED"))
            assert first not in driver.instances
        async with cloud(bus, store, driver, never):
            second = await active_server(store)
            image_id = await request_snapshot(store, stub, second, shelve=True)
            await eventually(lambda: status_is(store, second, "SHELVED"))
            got = await instance(store, second)
            assert (got["host"], got["power_state"], got["task_state"]) == ("node-1", 4, None)
            async with store.unit(source="test") as uow:
                row = await uow.conn.fetchrow(
                    "SELECT id, host FROM cmp_instances WHERE id = $1 FOR UPDATE", second
                )
                await server_shelve._power_on(uow, row)
            await eventually(lambda: status_is(store, second, "ACTIVE"))
    assert await image_status(store, image_id) == "deleted"
    assert driver.instances[second].power_state == 1


async def test_a_console_request_waits_for_the_reply_or_gives_up(store: Store) -> None:
    request_id = str(uuid.uuid4())
    answered = asyncio.Event()

    def wake(*_: Any) -> None:
        answered.set()

    async with store.pool.acquire() as conn:
        await conn.add_listener(CONSOLE_CHANNEL, wake)
        assert await server_console._wait(conn, request_id, asyncio.Event(), 0.2) is None
        reply = ConsoleOutputReady(
            instance_id="i", request_id=request_id, host="node-1", output="hello"
        )
        async with store.unit(source="test") as uow:
            await store_console_reply(uow.conn, reply)
        got = await server_console._wait(conn, request_id, answered, 5)
        await conn.remove_listener(CONSOLE_CHANNEL, wake)
    assert got is not None and got["output"] == "hello"
    assert answered.is_set()
    assert await store.pool.fetchval("SELECT count(*) FROM cmp_console_replies") == 0


async def has_event(store: Store, server: str, kind: str) -> bool:
    return kind in await kinds(store, server)


async def test_console_output_comes_back_through_the_conductor(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    async with cloud(bus, store, FakeDriver()):
        server = await active_server(store)
        answers = {}
        for length in (None, 2):
            request_id = str(uuid.uuid4())
            async with store.unit(source="test") as uow:
                await uow.emit(
                    GetConsoleOutput(instance_id=server, request_id=request_id, length=length),
                    to=address_of("node-1"),
                )
            await eventually(lambda rid=request_id: reply_exists(store, rid))  # type: ignore[misc]
            answers[length] = await store.pool.fetchrow(
                "SELECT output, error FROM cmp_console_replies WHERE request_id = $1", request_id
            )
        missing = str(uuid.uuid4())
        async with store.unit(source="test") as uow:
            await uow.emit(
                GetConsoleOutput(instance_id="nope", request_id=missing), to=address_of("node-1")
            )
        await eventually(lambda: reply_exists(store, missing))
    full = answers[None]["output"]
    assert f"Booting instance {server}" in full and len(full.splitlines()) == 5
    assert answers[2]["output"].splitlines() == full.splitlines()[-2:]
    error = await store.pool.fetchval(
        "SELECT error FROM cmp_console_replies WHERE request_id = $1", missing
    )
    assert error == "not_found"


async def reply_exists(store: Store, request_id: str) -> bool:
    return bool(
        await store.pool.fetchval(
            "SELECT count(*) = 1 FROM cmp_console_replies WHERE request_id = $1", request_id
        )
    )


async def image_status_is(store: Store, image_id: str, status: str) -> bool:
    return await image_status(store, image_id) == status


async def task_state_is(store: Store, server: str, task: str | None) -> bool:
    return bool((await instance(store, server))["task_state"] == task)
