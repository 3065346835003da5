"""Console tokens (mint, one-time use, expiry, binding), the console proxy in-process against a
stand-in VNC server, and the host's answer to ``compute.get_vnc_console`` through the conductor."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agents.compute.agent import address_of
from agents.compute.driver import ConsoleAddress
from agents.compute.fake import FakeDriver
from cloud.console.driver_address import fake_vnc_address
from cloud.console.proxy import build_app
from cloud.console.tokens import ConsoleTarget, TokenRefused, consume, mint, token_hash
from cloud.runtime.bus import Bus
from cloud.runtime.clock import ManualClock
from cloud.store.db import Store
from schemas.compute_consoles import GetVncConsole
from tests.compute.test_build_saga import add_host, boot
from tests.compute.test_image_saga import active_server, cloud, reply_exists
from tests.conftest import eventually

BANNER = b"RFB 003.008\n"
TARGET = ConsoleTarget("inst-1", "node-1", "127.0.0.1", 5900)


async def test_a_token_opens_what_it_was_minted_for_and_only_its_hash_is_kept(
    store: Store,
) -> None:
    clock = ManualClock()
    async with store.pool.acquire() as conn:
        token = await mint(conn, TARGET, now=clock.now(), ttl_s=600)
        stored = await conn.fetchval("SELECT token_hash FROM cmp_console_tokens")
        assert stored == token_hash(token) and token not in stored
        assert len(token) >= 40  # 32 random bytes
        assert await consume(conn, token, now=clock.now()) == TARGET


async def test_a_token_works_once(store: Store) -> None:
    clock = ManualClock()
    async with store.pool.acquire() as conn:
        token = await mint(conn, TARGET, now=clock.now())
        await consume(conn, token, now=clock.now())
        with pytest.raises(TokenRefused, match="already used"):
            await consume(conn, token, now=clock.now())


async def test_a_token_expires_after_its_ttl(store: Store) -> None:
    clock = ManualClock()
    async with store.pool.acquire() as conn:
        fresh = await mint(conn, TARGET, now=clock.now(), ttl_s=600)
        stale = await mint(conn, TARGET, now=clock.now(), ttl_s=600)
        clock.advance(599)
        assert await consume(conn, fresh, now=clock.now()) == TARGET
        clock.advance(1)
        with pytest.raises(TokenRefused, match="expired"):
            await consume(conn, stale, now=clock.now())
        # Expired tokens are swept when the next one is minted.
        await mint(conn, TARGET, now=clock.now(), ttl_s=600)
        old = await mint(conn, TARGET, now=clock.now(), ttl_s=1)
        clock.advance(2)
        await mint(conn, TARGET, now=clock.now())
        assert await conn.fetchval("SELECT count(*) FROM cmp_console_tokens") == 2
        with pytest.raises(TokenRefused):
            await consume(conn, old, now=clock.now())


async def test_a_token_of_another_instance_is_refused_and_burnt(store: Store) -> None:
    clock = ManualClock()
    async with store.pool.acquire() as conn:
        token = await mint(conn, TARGET, now=clock.now())
        with pytest.raises(TokenRefused, match="another instance"):
            await consume(conn, token, now=clock.now(), instance_id="inst-2")
        with pytest.raises(TokenRefused):
            await consume(conn, token, now=clock.now(), instance_id="inst-1")
        for nothing in ("", "not-a-token"):
            with pytest.raises(TokenRefused):
                await consume(conn, nothing, now=clock.now())


def test_the_fake_vnc_address_setting_parses() -> None:
    assert fake_vnc_address(None) is None and fake_vnc_address("") is None
    assert fake_vnc_address("127.0.0.1:5901") == ConsoleAddress("127.0.0.1", 5901)
    assert fake_vnc_address("[::1]:5900") == ConsoleAddress("::1", 5900)
    for bad in ("5900", "host:", "host:0", "host:70000", ":5900"):
        with pytest.raises(ValueError):
            fake_vnc_address(bad)


# -- the proxy ------------------------------------------------------------------------------


@asynccontextmanager
async def rfb_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A stand-in guest: sends the RFB banner, records what it gets."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        await writer.drain()
        while data := await reader.read(1024):
            received.append(data)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def proxy(store: Store, novnc: Path) -> AsyncIterator[str]:
    runner = web.AppRunner(build_app(store, novnc))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def placed_instance(store: Store, host: str) -> str:
    await add_host(store, host)
    server = await boot(store)
    await store.pool.execute("UPDATE cmp_instances SET host = $2 WHERE id = $1", server, host)
    return server


async def test_the_proxy_relays_rfb_once_per_token(store: Store, tmp_path: Path) -> None:
    server = await placed_instance(store, "node-1")
    async with rfb_server() as (port, received), proxy(store, tmp_path) as url:
        target = ConsoleTarget(server, "node-1", "127.0.0.1", port)
        async with store.pool.acquire() as conn:
            token = await mint(conn, target, now=store.clock.now())
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{url}/?token={token}", protocols=("binary",)) as ws:
                assert ws.protocol == "binary"
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == BANNER
                await ws.send_bytes(b"RFB 003.008\n")
                await eventually(lambda: b"".join(received) == BANNER)
            with pytest.raises(aiohttp.WSServerHandshakeError) as again:
                await http.ws_connect(f"{url}/websockify?token={token}")
            assert again.value.status == 403


async def test_the_proxy_refuses_gone_instances_foreign_origins_and_dead_consoles(
    store: Store, tmp_path: Path
) -> None:
    server = await placed_instance(store, "node-1")
    async with rfb_server() as (port, _), proxy(store, tmp_path) as url:
        async with store.pool.acquire() as conn:
            tokens = [
                await mint(conn, ConsoleTarget(server, host, "127.0.0.1", p), now=store.clock.now())
                for host, p in (("node-2", port), ("node-1", port), ("node-1", 1))
            ]
        async with aiohttp.ClientSession() as http:
            statuses = []
            for token, origin in zip(tokens, ("", "http://evil.example", ""), strict=True):
                headers = {"Origin": origin} if origin else {}
                try:
                    await http.ws_connect(f"{url}/?token={token}", headers=headers)
                    statuses.append(101)
                except aiohttp.WSServerHandshakeError as exc:
                    statuses.append(exc.status)
    # Moved to another host; another site's page; nothing listening at the bound port.
    assert statuses == [403, 403, 502]


async def test_the_page_needs_novnc_and_serves_only_its_files(store: Store, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    novnc = tmp_path / "novnc"
    async with proxy(store, novnc) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/vnc_lite.html?path=%3Ftoken%3Dx") as resp:
            assert resp.status == 503 and "scripts/fetch-novnc.sh" in await resp.text()
        (novnc / "core").mkdir(parents=True)
        (novnc / "core" / "rfb.js").write_text("export default class RFB {}")
        async with http.get(f"{url}/vnc_lite.html?path=%3Ftoken%3Dx") as resp:
            assert resp.status == 200 and "core/rfb.js" in await resp.text()
        async with http.get(f"{url}/novnc/core/rfb.js") as resp:
            assert resp.status == 200 and "RFB" in await resp.text()
        async with http.get(f"{url}/novnc/%2E%2E/outside.txt") as resp:
            assert resp.status == 404


# -- the host's answer ----------------------------------------------------------------------


async def test_the_host_answers_where_the_vnc_console_listens(bus: Bus, store: Store) -> None:
    await add_host(store, "node-1")
    driver = FakeDriver()
    async with cloud(bus, store, driver):
        server = await active_server(store)
        answers: dict[str, Any] = {}
        for case in ("none", "set", "stopped", "missing"):
            driver.vnc_address = None if case == "none" else ConsoleAddress("127.0.0.1", 5901)
            if case == "stopped":
                await driver.power_off(server)
            request_id = str(uuid.uuid4())
            target = "nope" if case == "missing" else server
            async with store.unit(source="test") as uow:
                await uow.emit(
                    GetVncConsole(instance_id=target, request_id=request_id),
                    to=address_of("node-1"),
                )
            await eventually(lambda rid=request_id: reply_exists(store, rid))
            answers[case] = await store.pool.fetchrow(
                "SELECT output, error FROM cmp_console_replies WHERE request_id = $1", request_id
            )
    assert answers["none"]["error"] == "unavailable"
    assert answers["set"]["error"] is None
    assert json.loads(answers["set"]["output"]) == {"host": "127.0.0.1", "port": 5901}
    assert "shutdown" in answers["stopped"]["error"]
    assert answers["missing"]["error"] == "not_found"
