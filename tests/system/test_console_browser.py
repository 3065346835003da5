"""The console page in a real browser: headless Chromium opens the URL ``openstack console url
show --novnc`` gives, noVNC (fetched from the npm registry, as a deployment does) completes the RFB
handshake through the console proxy with a real VNC server, and the same URL is refused next time.

The VNC server is QEMU's own, without a guest: ``-machine none -S`` runs nothing, but QEMU still
serves its (blank) display over VNC. The cloud's fake driver gives every instance that address
(``fake_vnc_address``). Chromium, playwright, npm and QEMU are installed by ``make test``
(scripts/ensure-services.sh, scripts/ensure-libvirt.sh, scripts/venv.sh); missing, the test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.system.conftest import (
    ROOT,
    RunningCloud,
    private_cloud,
    unique,
    upload_tiny_image,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
# What headless Chromium needs on these machines (root, no GPU, nothing to download).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QEMU = "qemu-system-x86_64"
WAIT_MS = 30_000  # how long the page may take to reach a state (a deadline, not an expectation)


@pytest.fixture(scope="session")
def novnc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """noVNC fetched the way a deployment fetches it (scripts/fetch-novnc.sh, from npm)."""
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: apt-get install npm (scripts/ensure-services.sh does)")
    dest = tmp_path_factory.mktemp("console") / "novnc"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-novnc.sh"), str(dest)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/fetch-novnc.sh failed ({proc.returncode}):\n{proc.stderr}")
    return dest


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _free_vnc_display() -> int:
    """A display N whose port 5900+N nobody holds (QEMU's -vnc takes a display, not a port)."""
    for display in range(50, 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", 5900 + display))
            except OSError:
                continue
            return display
    raise RuntimeError("no free VNC display among 50..99")


@pytest.fixture(scope="module")
def vnc_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real VNC server: QEMU with no machine, stopped (-S); its display still speaks RFB."""
    if shutil.which(QEMU) is None:
        pytest.fail(f"{QEMU} is missing: apt-get install qemu-system-x86 (ensure-libvirt.sh does)")
    log = tmp_path_factory.mktemp("qemu") / "qemu.log"
    for _ in range(5):  # another process may take the display between choosing and binding it
        display = _free_vnc_display()
        with log.open("wb") as out:
            qemu = subprocess.Popen(
                [QEMU, "-machine", "none", "-nodefaults", "-display", "none", "-S",
                 "-vnc", f"127.0.0.1:{display}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while qemu.poll() is None and not _answers(5900 + display):
            assert time.monotonic() < deadline, f"QEMU's VNC does not answer: {log.read_text()}"
            time.sleep(0.1)
        if qemu.poll() is None:
            break
    else:
        pytest.fail(f"QEMU did not start a VNC server: {log.read_text()}")
    try:
        yield 5900 + display
    finally:
        qemu.terminate()
        try:
            qemu.wait(timeout=10)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()


@pytest.fixture(scope="module")
def console_cloud(
    tmp_path_factory: pytest.TempPathFactory, vnc_port: int, novnc: Path
) -> Iterator[RunningCloud]:
    with private_cloud(
        tmp_path_factory.mktemp("console-cloud"),
        fake_vnc_address=f"127.0.0.1:{vnc_port}",
        console_novnc_dir=str(novnc),
    ) as (running, _proc):
        yield running


@pytest.fixture(scope="module")
def server(console_cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory) -> str:
    image = upload_tiny_image(console_cloud, tmp_path_factory.mktemp("img"))
    deadline = time.monotonic() + 30
    while not list(console_cloud.sdk().compute.hypervisors()):
        assert time.monotonic() < deadline, "no compute host reported"
        time.sleep(0.2)
    created = console_cloud.openstack(
        "server", "create", "--image", image, "--flavor", "m1.tiny", "--wait", unique("vm")
    )
    assert created["status"] == "ACTIVE"
    return str(created["id"])


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: .venv/bin/pip install -e '.[dev]' (scripts/venv.sh)")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (ensure-services.sh does)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def status_after_opening(browser: Browser, url: str, wanted: str) -> str:
    """Open ``url`` in a fresh page; the console's status line once it reads ``wanted`` (or, when
    it never does, whatever it reads at the deadline, for the assertion to show)."""
    from playwright.sync_api import Error

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url)
        status = page.locator("#status")
        with contextlib.suppress(Error):  # a timeout: report what the page shows instead
            status.filter(has_text=wanted).wait_for(timeout=WAIT_MS)
        text = status.inner_text()
        assert not errors, errors  # noVNC failed to load or threw
        return text
    finally:
        page.close()


def test_the_console_page_connects_through_the_proxy_once(
    console_cloud: RunningCloud, server: str, chromium: Browser
) -> None:
    url = str(console_cloud.openstack("console", "url", "show", "--novnc", server)["url"])
    assert status_after_opening(chromium, url, "Connected") == "Connected"
    # The token is spent: the proxy refuses the websocket and the page says so.
    again = status_after_opening(chromium, url, "Refused")
    assert again.startswith("Refused or lost"), again
