"""The cloud the compute benchmark drives: separate ``aiostack run`` processes on one database and
a private RabbitMQ namespace (gateway, scheduler, conductor, and one compute process hosting many
fake hypervisors), plus the client-side helpers: a token, an image, unlimited quotas, and a
watcher that tells when servers reach a state.

The watcher reads the servers' rows once every 10 ms for all waiting servers at once (one query),
instead of every client polling ``GET /servers/{id}``: fifty pollers would cost the gateway more
than the boots themselves and measure the polling, not the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

from cloud.runtime.amqp import AmqpBus

ROOT = Path(__file__).resolve().parents[1]
ACTORS = ("gateway", "scheduler", "conductor", "compute")
HOST = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ComputeCloud:
    dsn: str
    amqp_url: str
    hosts: int
    work: Path
    port: int = field(default_factory=_free_port)
    namespace: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:8]}")
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSTACK_")}
        return env | {
            "AIOSTACK_DATABASE_URL": self.dsn,
            "AIOSTACK_AMQP_URL": self.amqp_url,
            "AIOSTACK_BUS_NAMESPACE": self.namespace,
            "AIOSTACK_STATE_DIR": str(self.work / "state"),
            "AIOSTACK_LISTEN": f"127.0.0.1:{self.port}",
            "AIOSTACK_HOST": HOST,
            "AIOSTACK_LOG_LEVEL": "warning",
            "AIOSTACK_LOG_FORMAT": "json",
            "AIOSTACK_FAKE_HOSTS": str(self.hosts),
            "AIOSTACK_COMPUTE_DRIVER": "fake",
        }

    async def start(self) -> None:
        boot = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cloud.cli", "bootstrap"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if boot.returncode != 0:
            raise RuntimeError(f"bootstrap failed: {boot.stderr[-2000:]}")
        for actor in ACTORS:
            self.procs[actor] = self._spawn(actor)

    def _spawn(self, actor: str) -> subprocess.Popen[bytes]:
        log = (self.work / f"{actor}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "cloud.cli", "run", actor],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=log,
        )

    def check(self) -> None:
        for actor, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.work / f"{actor}.log").read_text()[-2000:]
                raise RuntimeError(f"{actor} exited {proc.returncode}: {tail}")

    async def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
        with contextlib.suppress(Exception):
            bus = AmqpBus(self.amqp_url, namespace=self.namespace)
            await bus.start()
            for queue in ("scheduler", "conductor", f"compute.{HOST}"):
                await bus.delete_queue(queue)
            await bus.delete_topology()
            await bus.close()

    def admin_auth(self) -> dict[str, Any]:
        clouds = yaml.safe_load((self.work / "state" / "clouds.yaml").read_text())
        return dict(clouds["clouds"]["aiostack-admin"]["auth"])


@contextlib.asynccontextmanager
async def running(dsn: str, amqp_url: str, hosts: int, work: Path) -> AsyncIterator[ComputeCloud]:
    cloud = ComputeCloud(dsn, amqp_url, hosts, work)
    try:
        await cloud.start()
        yield cloud
    finally:
        await cloud.stop()


async def until(check: Any, what: str, within_s: float, cloud: ComputeCloud) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        cloud.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within_s:g} s")
        await asyncio.sleep(0.2)


@dataclass
class Client:
    """An admin's aiohttp session on the gateway, with its token and project."""

    session: aiohttp.ClientSession
    url: str
    token: str
    project: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


async def login(session: aiohttp.ClientSession, cloud: ComputeCloud) -> Client:
    auth = cloud.admin_auth()
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": auth["username"],
                        "password": auth["password"],
                        "domain": {"name": auth.get("user_domain_name", "Default")},
                    }
                },
            },
            "scope": {
                "project": {
                    "name": auth["project_name"],
                    "domain": {"name": auth.get("project_domain_name", "Default")},
                }
            },
        }
    }
    for _ in range(300):
        cloud.check()
        with contextlib.suppress(aiohttp.ClientConnectionError):
            async with session.post(f"{cloud.url}/identity/v3/auth/tokens", json=body) as reply:
                if reply.status == 201:
                    data = await reply.json()
                    token = reply.headers["X-Subject-Token"]
                    return Client(session, cloud.url, token, data["token"]["project"]["id"])
        await asyncio.sleep(0.2)
    raise RuntimeError("no token from the gateway")


async def unlimited_quota(client: Client, pool: asyncpg.Pool) -> None:
    """No quota in the way: through os-quota-sets, or the same override directly if not served."""
    limits = {"instances": -1, "cores": -1, "ram": -1}
    url = f"{client.url}/compute/v2.1/os-quota-sets/{client.project}"
    async with client.session.put(url, json={"quota_set": limits}, headers=client.headers) as reply:
        if reply.status == 200:
            return
    for resource, limit in limits.items():
        await pool.execute(
            """INSERT INTO cmp_quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
               ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = $3""",
            client.project,
            resource,
            limit,
        )


async def make_image(client: Client) -> str:
    meta = {"name": "bench", "disk_format": "raw", "container_format": "bare"}
    async with client.session.post(
        f"{client.url}/image/v2/images", json=meta, headers=client.headers
    ) as reply:
        reply.raise_for_status()
        image = str((await reply.json())["id"])
    headers = client.headers | {"Content-Type": "application/octet-stream"}
    async with client.session.put(
        f"{client.url}/image/v2/images/{image}/file", data=b"\0" * 4096, headers=headers
    ) as reply:
        if reply.status != 204:
            raise RuntimeError(f"image upload: {reply.status} {await reply.text()}")
    return image


class Watcher:
    """Resolves a future when a server reaches ACTIVE (or is gone); ERROR raises."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting: dict[str, tuple[str, asyncio.Future[float]]] = {}

    def wait(self, server: str, state: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[server] = (state, future)
        return future

    async def run(self) -> None:
        while True:
            if self._waiting:
                rows = await self._pool.fetch(
                    """SELECT id, status, task_state, deleted_at IS NOT NULL AS gone,
                              fault::text AS fault FROM cmp_instances WHERE id = ANY($1::text[])""",
                    list(self._waiting),
                )
                now = time.perf_counter()
                for row in rows:
                    state, future = self._waiting[row["id"]]
                    if state == "GONE" and row["gone"]:
                        future.set_result(now)
                    elif row["gone"] or row["status"] == "ERROR":
                        future.set_exception(RuntimeError(f"{row['status']}: {row['fault']}"))
                    elif row["status"] == state and row["task_state"] is None:
                        future.set_result(now)
                    else:
                        continue
                    del self._waiting[row["id"]]
            await asyncio.sleep(0.01)
