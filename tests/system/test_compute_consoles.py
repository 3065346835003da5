"""Remote consoles end to end: ``openstack console url show --novnc``, then a websocket through
the console proxy reaches a stand-in guest (a TCP server the test runs, sending the RFB banner);
one-time and expiring tokens; the 2.6+ API and the legacy action with their 400/404/409s.

The cloud is our own (``start_cloud``): its fake driver gives every running instance the stand-in's
address as its VNC console (``AIOSTACK_FAKE_VNC_ADDRESS``), and its proxy a free port.
"""

from __future__ import annotations

import asyncio
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from tests.conftest import dsn_for
from tests.system.conftest import (
    RunningCloud,
    private_cloud,
    unique,
    upload_tiny_image,
)
from tests.system.test_compute_images import act, wait_for

BANNER = b"RFB 003.008\n"


class _Guest(socketserver.BaseRequestHandler):
    """What a guest's VNC server says first; then it listens until the client goes."""

    def handle(self) -> None:
        self.request.sendall(BANNER)
        while self.request.recv(1024):
            pass


@pytest.fixture(scope="module")
def guest_vnc() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Guest)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def vnc_cloud(tmp_path_factory: pytest.TempPathFactory, guest_vnc: int) -> Iterator[RunningCloud]:
    with private_cloud(
        tmp_path_factory.mktemp("vnc-cloud"),
        fake_vnc_address=f"127.0.0.1:{guest_vnc}",
        console_allowed_origins='["dashboard.example"]',
    ) as (running, _proc):  # the console proxy gets a free port of its own
        yield running


@pytest.fixture(scope="module")
def compute(vnc_cloud: RunningCloud) -> Any:
    conn = vnc_cloud.sdk()
    deadline = time.monotonic() + 30
    while not list(conn.compute.hypervisors()):
        assert time.monotonic() < deadline, "no compute host reported"
        time.sleep(0.2)
    return conn.compute


@pytest.fixture(scope="module")
def image(vnc_cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory) -> str:
    return upload_tiny_image(vnc_cloud, tmp_path_factory.mktemp("img"))


def boot(cloud: RunningCloud, image: str) -> str:
    server = cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.tiny", "--wait", unique("vm")
    )
    assert server["status"] == "ACTIVE"
    return str(server["id"])


@pytest.fixture(scope="module")
def server(vnc_cloud: RunningCloud, image: str, compute: Any) -> str:
    return boot(vnc_cloud, image)


def websocket_url(console_url: str, **extra: str) -> str:
    """The proxy's websocket URL the console page would open (``extra``: more query)."""
    parts = urlsplit(console_url)
    assert parts.path == "/vnc_lite.html"
    path = parse_qs(parts.query)["path"][0]
    token = parse_qs(urlsplit(path).query)["token"][0]
    query = "&".join([f"token={token}", *(f"{k}={v}" for k, v in extra.items())])
    return f"ws://{parts.netloc}/?{query}"


def first_bytes(ws_url: str, origin: str | None = None) -> bytes | int:
    """What the proxy relays first from the guest, or the HTTP status that refused the upgrade
    (``origin``: the Origin header a browser page would send)."""
    headers = {"Origin": origin} if origin else {}

    async def go() -> bytes | int:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(ws_url, protocols=("binary",), headers=headers) as ws:
                    msg = await ws.receive(timeout=30)
                    assert msg.type == aiohttp.WSMsgType.BINARY, msg
                    return bytes(msg.data)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return asyncio.run(go())


def remote_console(compute: Any, server_id: str, body: Any, version: str = "2.6") -> Any:
    return compute.post(
        f"/servers/{server_id}/remote-consoles", json=body, microversion=version, raise_exc=False
    )


def novnc_url(compute: Any, server_id: str) -> str:
    resp = remote_console(
        compute, server_id, {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["remote_console"]["url"])


def test_console_url_show_novnc_opens_the_guest_once(vnc_cloud: RunningCloud, server: str) -> None:
    shown = vnc_cloud.openstack("console", "url", "show", "--novnc", server)
    assert shown["type"] == "novnc" and shown["protocol"] == "vnc"
    ws_url = websocket_url(shown["url"])
    assert first_bytes(ws_url) == BANNER
    assert first_bytes(ws_url) == 403  # the same token again


def test_only_pages_of_this_proxy_or_allowed_origins_open_consoles(
    server: str, compute: Any
) -> None:
    own = "http://" + urlsplit(novnc_url(compute, server)).netloc
    cases = {
        own: BANNER,  # the console page itself
        "http://dashboard.example:8080": BANNER,  # console_allowed_origins (a host name)
        "http://evil.example": 403,
        own.replace("http:", "https:"): 403,  # the console URLs are http
        "null": 403,  # a sandboxed frame of any site
    }
    seen = {
        origin: first_bytes(websocket_url(novnc_url(compute, server)), origin) for origin in cases
    }
    assert seen == cases


def test_an_expired_token_is_refused(vnc_cloud: RunningCloud, server: str, compute: Any) -> None:
    ws_url = websocket_url(novnc_url(compute, server))

    async def expire() -> None:
        conn = await asyncpg.connect(dsn_for(vnc_cloud.database))
        try:
            # As if console_token_ttl_s had passed: the row's deadline is behind us.
            await conn.execute(
                "UPDATE cmp_console_tokens SET expires_at = now() - interval '1 second'"
            )
        finally:
            await conn.close()

    asyncio.run(expire())
    assert first_bytes(ws_url) == 403


def test_a_token_of_another_server_cannot_be_used(
    vnc_cloud: RunningCloud, image: str, server: str, compute: Any
) -> None:
    other = boot(vnc_cloud, image)
    ws_url = websocket_url(novnc_url(compute, server), instance_id=other)
    assert first_bytes(ws_url) == 403
    mine = websocket_url(novnc_url(compute, other), instance_id=other)
    assert first_bytes(mine) == BANNER


def test_the_legacy_action_answers_up_to_2_5(server: str, compute: Any) -> None:
    resp = act(compute, server, {"os-getVNCConsole": {"type": "novnc"}}, "2.5")
    assert resp.status_code == 200, resp.text
    console = resp.json()["console"]
    assert console["type"] == "novnc"
    assert first_bytes(websocket_url(console["url"])) == BANNER
    assert act(compute, server, {"os-getVNCConsole": {"type": "novnc"}}, "2.6").status_code == 404
    for body in ({}, {"type": "spice-html5"}, {"type": "novnc", "x": 1}, None, "novnc"):
        resp = act(compute, server, {"os-getVNCConsole": body}, "2.1")
        assert resp.status_code == 400, (body, resp.text)
    resp = act(compute, server, {"os-getVNCConsole": {"type": "xvpvnc"}}, "2.1")
    assert resp.status_code == 400 and "Invalid console type xvpvnc" in resp.text


def test_remote_consoles_validates_like_nova(server: str, compute: Any) -> None:
    good = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    assert remote_console(compute, server, good, "2.5").status_code == 404
    body = remote_console(compute, server, good, "2.6").json()["remote_console"]
    assert body["protocol"] == "vnc" and body["type"] == "novnc"
    assert "/vnc_lite.html?path=%3Ftoken%3D" in body["url"]
    bad: list[Any] = [
        {},
        {"remote_console": {"protocol": "vnc"}},
        {"remote_console": {"type": "novnc"}},
        {"remote_console": {"protocol": "vnc", "type": "novnc", "extra": 1}},
        {"remote_console": {"protocol": "telnet", "type": "novnc"}},
        {"remote_console": {"protocol": "vnc", "type": "vt100"}},
        {"remote_console": "vnc"},
        {"remote_console": {"protocol": "mks", "type": "webmks"}},  # 2.8+
        [],
    ]
    for payload in bad:
        resp = remote_console(compute, server, payload)
        assert resp.status_code == 400, (payload, resp.text)
    cases = [
        ({"protocol": "spice", "type": "spice-html5"}, "2.6", "Unavailable console type"),
        ({"protocol": "serial", "type": "serial"}, "2.6", "Unavailable console type"),
        ({"protocol": "mks", "type": "webmks"}, "2.8", "Unavailable console type"),
        ({"protocol": "vnc", "type": "spice-html5"}, "2.6", "Invalid console type"),
    ]
    for console, version, message in cases:
        resp = remote_console(compute, server, {"remote_console": console}, version)
        assert resp.status_code == 400 and message in resp.text, (console, resp.text)
    assert remote_console(compute, "00000000-0000-0000-0000-000000000000", good).status_code == 404


def test_no_console_without_a_running_guest_on_a_host(
    vnc_cloud: RunningCloud, image: str, compute: Any
) -> None:
    sid = boot(vnc_cloud, image)
    good = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    demo = vnc_cloud.sdk("aiostack").compute
    assert remote_console(demo, sid, good).status_code == 404  # another project's server
    vnc_cloud.openstack("server", "stop", sid)
    wait_for(compute, sid, "SHUTOFF")
    resp = remote_console(compute, sid, good)
    assert resp.status_code == 409 and "not ready" in resp.text, resp.text
    vnc_cloud.openstack("server", "shelve", sid)
    wait_for(compute, sid, "SHELVED_OFFLOADED")
    resp = remote_console(compute, sid, good)
    assert resp.status_code == 409 and f"Instance {sid} is not ready" in resp.text, resp.text


def test_a_cloud_whose_guests_have_no_vnc_says_so(cloud: RunningCloud, tmp_path: Path) -> None:
    """The default fake driver has no VNC: Nova's answer for a guest without VNC graphics."""
    data = tmp_path / "disk.raw"
    data.write_bytes(b"\0" * 1024)
    img = cloud.openstack(
        "image",
        "create",
        "--file",
        str(data),
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        unique("img"),
    )
    sid = boot(cloud, str(img["id"]))
    stderr = cloud.fails("console", "url", "show", "--novnc", sid)
    assert "Unavailable console type vnc" in stderr
