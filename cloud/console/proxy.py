"""The console proxy (Nova's novncproxy): a websocket that relays RFB between noVNC and a guest.

``aiostack run console-proxy`` (and ``aiostack up``) serves, on ``console_proxy_listen``:

- ``/vnc_lite.html``: the console page (:mod:`cloud.console.page`), noVNC under ``/novnc/``;
- a websocket at ``/`` (and ``/websockify``), websockify style: ``?token=...`` is checked and
  consumed (:mod:`cloud.console.tokens`), the instance must still be on the token's host, then a
  TCP connection to the bound VNC address carries the bytes both ways (``binary`` subprotocol).

A refused token is an HTTP 403 before the upgrade, so the client learns it at once; an unreachable
VNC server a 502. Origin is checked as Nova does: a browser page of another site may not open it,
unless ``console_allowed_origins`` names that site's host.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from aiohttp import WSMsgType, web

from cloud.config import Settings
from cloud.console import page
from cloud.console.tokens import ConsoleTarget, TokenRefused, consume
from cloud.store.db import Store

log = structlog.get_logger("aiostack.console")


@dataclass(frozen=True)
class Origins:
    """Which browser pages may open a console, besides the proxy's own (Nova's origin check)."""

    hosts: frozenset[str] = frozenset()  # console_allowed_origins: host names of other sites
    scheme: str = "http"  # of the console URLs: an https console refuses an http page

    @classmethod
    def of(cls, settings: Settings) -> Origins:
        scheme = urlsplit(settings.console_base_url()).scheme.lower() or "http"
        return cls(frozenset(h.lower() for h in settings.console_allowed_origins), scheme)


STORE = web.AppKey("store", Store)
NOVNC_DIR = web.AppKey("novnc_dir", Path)
ORIGINS = web.AppKey("origins", Origins)
CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 10.0


def novnc_dir(settings: Settings) -> Path:
    return (settings.console_novnc_dir or settings.state_dir / "novnc").resolve()


def build_app(store: Store, novnc: Path, origins: Origins | None = None) -> web.Application:
    app = web.Application()
    app[STORE], app[NOVNC_DIR], app[ORIGINS] = store, novnc, origins or Origins()
    app.router.add_get("/", _root)
    app.router.add_get("/websockify", _websocket)
    app.router.add_get("/vnc_lite.html", _page)
    app.router.add_get("/vnc.html", _page)
    app.router.add_get("/novnc/{path:.+}", _novnc_file)
    return app


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _root(request: web.Request) -> web.StreamResponse:
    if _is_upgrade(request):
        return await _websocket(request)
    raise web.HTTPFound("/vnc_lite.html")


async def _page(request: web.Request) -> web.Response:
    novnc = request.app[NOVNC_DIR]
    if not page.installed(novnc):
        return web.Response(status=503, text=page.missing_page(novnc), content_type="text/html")
    return web.Response(text=page.CONSOLE_PAGE, content_type="text/html")


async def _novnc_file(request: web.Request) -> web.StreamResponse:
    root = request.app[NOVNC_DIR]
    target = (root / request.match_info["path"]).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(target)


def origin_ok(origin: str | None, host: str, allowed: Origins) -> bool:
    """Nova's check: a browser's Origin must be the page's own (``host``, the request's Host) or
    name a host in ``allowed``, and its scheme must be the console URLs' (http for ws, https for
    wss), so an http page cannot drive an https console."""
    if origin is None:
        return True  # not a browser: no cross-site request to stop
    parts = urlsplit(origin)
    if {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme) != allowed.scheme:
        return False  # also "null" (a sandboxed or file:// page), as in Nova
    if parts.netloc.lower() == host.lower():
        return True  # the same origin (stricter than Nova, which ignores the port)
    return (parts.hostname or "") in allowed.hosts


async def _still_there(store: Store, target: ConsoleTarget) -> bool:
    """The instance still exists on the host the token names (Nova re-checks the port too)."""
    return bool(
        await store.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM cmp_instances
                              WHERE id = $1 AND host = $2 AND deleted_at IS NULL)""",
            target.instance_id,
            target.host,
        )
    )


async def _websocket(request: web.Request) -> web.StreamResponse:
    if not _is_upgrade(request):
        raise web.HTTPBadRequest(text="websocket upgrade expected")
    if not origin_ok(request.headers.get("Origin"), request.host, request.app[ORIGINS]):
        log.warning("console.origin_refused", origin=request.headers.get("Origin"))
        raise web.HTTPForbidden(text="origin not allowed")
    store = request.app[STORE]
    try:
        async with store.pool.acquire() as conn:
            target = await consume(
                conn,
                request.query.get("token", ""),
                now=store.clock.now(),
                instance_id=request.query.get("instance_id"),
            )
    except TokenRefused as exc:
        log.info("console.token_refused", reason=str(exc))
        raise web.HTTPForbidden(text=f"console token refused: {exc}") from None
    if not await _still_there(store, target):
        log.info("console.instance_gone", instance_id=target.instance_id)
        raise web.HTTPForbidden(text="console token refused: the instance is no longer there")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.address, target.port), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        log.warning("console.unreachable", instance_id=target.instance_id, error=str(exc))
        raise web.HTTPBadGateway(text="the console of this instance does not answer") from None
    ws = web.WebSocketResponse(protocols=("binary",), max_msg_size=0)
    try:
        await ws.prepare(request)
        log.info("console.opened", instance_id=target.instance_id, host=target.host)
        await _relay(ws, reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()
        log.info("console.closed", instance_id=target.instance_id)
    return ws


async def _relay(
    ws: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Bytes both ways until either side closes; then close the other."""

    async def guest_to_browser() -> None:
        while data := await reader.read(CHUNK):
            await ws.send_bytes(data)

    async def browser_to_guest() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == WSMsgType.ERROR:
                return

    tasks = [asyncio.ensure_future(guest_to_browser()), asyncio.ensure_future(browser_to_guest())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
        await ws.close()


class ConsoleProxy:
    """Serves the console proxy until ``stop`` is set."""

    def __init__(self, settings: Settings, store: Store, *, optional: bool = False) -> None:
        """``optional``: a node running more than the proxy (``aiostack up``) keeps running when
        the proxy's address is taken (another cloud on this machine, say); alone it fails."""
        self.settings, self.store, self.optional = settings, store, optional

    async def run(self, stop: asyncio.Event) -> None:
        novnc = novnc_dir(self.settings)
        app = build_app(self.store, novnc, Origins.of(self.settings))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = self.settings.console_proxy_listen.rpartition(":")
        site = web.TCPSite(runner, host or None, int(port), reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if not self.optional:
                raise
            log.error(
                "console.listen_failed",
                listen=self.settings.console_proxy_listen,
                error=str(exc),
                hint="set console_proxy_listen to a free HOST:PORT; consoles are off meanwhile",
            )
            await stop.wait()
            return
        log.info(
            "console.listening",
            listen=self.settings.console_proxy_listen,
            url=self.settings.console_base_url(),
            novnc=str(novnc) if page.installed(novnc) else None,
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
