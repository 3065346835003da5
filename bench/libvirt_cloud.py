"""The aiostack side of the libvirt boot benchmark (:mod:`bench.libvirt_boot`): one ``aiostack up``
with the libvirt driver on its own database, instances directory and domain prefix, the test guest
uploaded through the image API, and a boot timed from ``POST /servers`` to the guest's first
console line (read from the file the driver has virtlogd write, as the baseline's is).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

ROOT = Path(__file__).resolve().parents[1]
FLAVOR = "0"  # m1.nano: 1 vCPU, 128 MiB (cloud/compute/service.py)
STARTUP_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def first_line(
    log: Path, started: float, within_s: float, failed: Callable[[], Awaitable[str | None]]
) -> float:
    """Seconds from ``started`` (perf_counter) until ``log`` holds a complete line.

    Polled every 10 ms; ``failed`` is asked once a second and ends the wait with its answer (the
    server went to ERROR, the domain died).
    """
    deadline, next_check = started + within_s, started + 1.0
    while True:
        if await asyncio.to_thread(_has_line, log):
            return time.perf_counter() - started
        now = time.perf_counter()
        if now > deadline:
            raise RuntimeError(f"no console line in {log} within {within_s:g} s")
        if now > next_check:
            next_check = now + 1.0
            if (why := await failed()) is not None:
                raise RuntimeError(why)
        await asyncio.sleep(0.01)


def _has_line(log: Path) -> bool:
    try:
        return log.stat().st_size > 0 and b"\n" in log.read_bytes()
    except FileNotFoundError:  # the driver has not made the instance's directory yet
        return False


@dataclass
class Cloud:
    """A running ``aiostack up`` and an admin token on it."""

    url: str
    dsn: str
    instances: Path
    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    pid: int = 0
    token: str = ""
    image: str = ""

    def cpu_s(self) -> float:
        """CPU seconds the ``aiostack up`` process (and its reaped children, qemu-img) used so
        far: what it takes from the TCG guests on a 2-core machine."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    async def _fault(self, server: str) -> str | None:
        row = await self.pool.fetchrow(
            "SELECT status, fault::text AS fault FROM cmp_instances WHERE id = $1", server
        )
        if row is not None and row["status"] == "ERROR":
            return f"server {server} went to ERROR: {row['fault']}"
        return None

    async def boot(self, name: str, within_s: float) -> tuple[str, float, float]:
        """The server's id, when the POST was sent, seconds from it to the first console line."""
        body = {"server": {"name": name, "imageRef": self.image, "flavorRef": FLAVOR}}
        started = time.perf_counter()
        async with self.session.post(
            f"{self.url}/compute/v2.1/servers", json=body, headers=self.headers
        ) as reply:
            if reply.status != 202:
                raise RuntimeError(f"POST /servers: {reply.status} {await reply.text()}")
            server = str((await reply.json())["server"]["id"])
        log = self.instances / server / "console.log"
        spent = await first_line(log, started, within_s, lambda: self._fault(server))
        return server, started, spent

    async def delete(self, server: str, within_s: float) -> None:
        """DELETE the server and wait until the API no longer knows it."""
        url = f"{self.url}/compute/v2.1/servers/{server}"
        async with self.session.delete(url, headers=self.headers) as reply:
            if reply.status not in (204, 404):
                raise RuntimeError(f"DELETE {server}: {reply.status} {await reply.text()}")
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            async with self.session.get(url, headers=self.headers) as reply:
                if reply.status == 404:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"server {server} still there {within_s:g} s after DELETE")


def _env(dsn: str, work: Path, instances: Path, prefix: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSTACK_")}
    return env | {
        "AIOSTACK_DATABASE_URL": dsn,
        "AIOSTACK_STATE_DIR": str(work / "state"),
        "AIOSTACK_LISTEN": f"127.0.0.1:{port}",
        "AIOSTACK_CONSOLE_PROXY_LISTEN": f"127.0.0.1:{_free_port()}",
        "AIOSTACK_LOG_LEVEL": "warning",
        "AIOSTACK_LOG_FORMAT": "json",
        "AIOSTACK_COMPUTE_DRIVER": "libvirt",
        "AIOSTACK_INSTANCES_DIR": str(instances),
        "AIOSTACK_LIBVIRT_DOMAIN_PREFIX": prefix,
    }


async def _token(session: aiohttp.ClientSession, url: str, auth: dict[str, Any]) -> str:
    user = {"name": auth["username"], "password": auth["password"]}
    user["domain"] = {"name": auth.get("user_domain_name", "Default")}
    project = {"name": auth["project_name"]}
    project["domain"] = {"name": auth.get("project_domain_name", "Default")}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": project},
        }
    }
    async with session.post(f"{url}/identity/v3/auth/tokens", json=body) as reply:
        if reply.status != 201:
            raise RuntimeError(f"token: {reply.status} {await reply.text()}")
        return reply.headers["X-Subject-Token"]


async def _upload_test_image(work: Path) -> str:
    """``scripts/test-image.sh --cloud``: kernel, ramdisk and disk; the bootable image's id."""
    env = os.environ | {
        "OS_CLIENT_CONFIG_FILE": str(work / "state" / "clouds.yaml"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", "scripts/test-image.sh", "--cloud", "aiostack-admin", "--name", "bench-libvirt"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/test-image.sh --cloud failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


@contextlib.asynccontextmanager
async def running(dsn: str, work: Path, instances: Path, prefix: str) -> AsyncIterator[Cloud]:
    """``aiostack up`` until the libvirt host has reported and the test image is uploaded;
    stopped (SIGTERM, then SIGKILL after 30 s) on the way out, whatever happened."""
    port = _free_port()
    log = (work / "aiostack.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud.cli",
        "up",
        cwd=ROOT,
        env=_env(dsn, work, instances, prefix, port),
        stdout=log,
        stderr=log,
    )
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with aiohttp.ClientSession() as session:
            cloud = Cloud(f"http://127.0.0.1:{port}", dsn, instances, session, pool, proc.pid)
            clouds = work / "state" / "clouds.yaml"
            deadline = time.monotonic() + STARTUP_S
            while not cloud.token:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"aiostack up did not start; see {log.name}")
                with contextlib.suppress(OSError, aiohttp.ClientError, RuntimeError, KeyError):
                    auth = yaml.safe_load(clouds.read_text())["clouds"]["aiostack-admin"]["auth"]
                    cloud.token = await _token(session, cloud.url, auth)
                await asyncio.sleep(0.2)
            while not await pool.fetchval("SELECT count(*) FROM cmp_hosts WHERE ram_mb > 0"):
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"no libvirt host reported; see {log.name}")
                await asyncio.sleep(0.2)
            cloud.image = await _upload_test_image(work)
            yield cloud
    finally:
        await pool.close()
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()
