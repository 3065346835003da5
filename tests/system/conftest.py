"""A running aiostack for system tests: ``aiostack up`` in a subprocess on a fresh database.

Tests drive it like a user: the ``openstack`` CLI (``cloud.openstack(...)``) and openstacksdk
(``cloud.sdk(...)``), both configured by the clouds.yaml that bootstrap wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import openstack
import openstack.connection
import pytest
import requests
import yaml
from openstack.config.loader import OpenStackConfig

from tests.conftest import PG_URL, dsn_for

ROOT = Path(__file__).resolve().parents[2]
OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held at once while choosing, so none is handed out twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


class CliError(AssertionError):
    def __init__(self, args: tuple[str, ...], proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"openstack {' '.join(args)} -> exit {proc.returncode}\n{proc.stderr}")
        self.returncode, self.stderr = proc.returncode, proc.stderr


@dataclass
class RunningCloud:
    url: str
    database: str
    clouds_yaml: Path
    state_dir: Path
    log_path: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        return env

    def password(self, cloud: str) -> str:
        data = yaml.safe_load(self.clouds_yaml.read_text())
        return str(data["clouds"][cloud]["auth"]["password"])

    def run_cli(
        self, *args: str, cloud: str = "aiostack-admin", extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env() | (extra_env or {})
        cmd = [OPENSTACK, *(["--os-cloud", cloud] if cloud else []), *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)

    def openstack(self, *args: str, cloud: str = "aiostack-admin", **kw: Any) -> Any:
        """Run ``openstack ARGS`` (adds ``-f json`` to show/list/create); parsed output or text."""
        wants_json = any(a in ("list", "show", "create", "issue", "set") for a in args[:3])
        full = (*args, "-f", "json") if wants_json and "set" not in args[:3] else args
        proc = self.run_cli(*full, cloud=cloud, **kw)
        if proc.returncode != 0:
            raise CliError(args, proc)
        out = proc.stdout.strip()
        if full is not args:
            return json.loads(out) if out else None
        return out

    def fails(self, *args: str, cloud: str = "aiostack-admin", **kw: Any) -> str:
        """Run a command that must fail; its stderr."""
        proc = self.run_cli(*args, cloud=cloud, **kw)
        assert proc.returncode != 0, f"openstack {' '.join(args)} unexpectedly succeeded"
        return proc.stderr

    def sdk(self, cloud: str = "aiostack-admin") -> openstack.connection.Connection:
        config = OpenStackConfig(config_files=[str(self.clouds_yaml)], load_envvars=False)
        return openstack.connection.Connection(config=config.get_one(cloud=cloud))


async def create_database() -> str:
    name = f"aiostack_sys_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def start_cloud(
    tmp: Path,
    database: str,
    *,
    command: tuple[str, ...] = ("up",),
    state: Path | None = None,
    port: int | None = None,
    **settings: str,
) -> tuple[subprocess.Popen[bytes], RunningCloud]:
    """Start ``aiostack COMMAND`` on ``port`` (default: a free one); return once it answers (and
    has a clouds.yaml). The console proxy gets a free port of its own."""
    console_port, free = free_ports(2)
    port = port or free
    state = state or tmp / "state"
    log_path = tmp / f"aiostack-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSTACK_")}
    env |= {
        "AIOSTACK_DATABASE_URL": dsn_for(database),
        "AIOSTACK_STATE_DIR": str(state),
        "AIOSTACK_LISTEN": f"127.0.0.1:{port}",
        # Its own console proxy port too: several clouds run side by side in one test session.
        "AIOSTACK_CONSOLE_PROXY_LISTEN": f"127.0.0.1:{console_port}",
        "AIOSTACK_LOG_FORMAT": "json",
        # libvirtd runs on test machines, and `auto` would take it: real guests are for the few
        # tests that ask for them (compute_driver="libvirt").
        "AIOSTACK_COMPUTE_DRIVER": "fake",
        # Cheap hashing keeps the suite fast; production defaults are argon2's recommended ones.
        "AIOSTACK_ARGON2_MEMORY_KIB": "1024",
        "AIOSTACK_ARGON2_TIME_COST": "1",
    }
    env |= {f"AIOSTACK_{k.upper()}": v for k, v in settings.items()}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloud.cli", *command], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    cloud = RunningCloud(
        f"http://127.0.0.1:{port}", database, state / "clouds.yaml", state, log_path
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aiostack up exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            if (
                requests.get(cloud.url + "/identity/v3", timeout=2).ok
                and cloud.clouds_yaml.exists()
            ):
                return proc, cloud
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"aiostack up did not answer in 60 s:\n{log_path.read_text()}")


@contextlib.contextmanager
def private_cloud(
    tmp: Path, **settings: Any
) -> Iterator[tuple[RunningCloud, subprocess.Popen[bytes]]]:
    """A cloud of a test module's own (its database, settings, ports); stopped and its database
    dropped on the way out."""
    import asyncio

    database = asyncio.run(create_database())
    try:
        proc, running = start_cloud(tmp, database, **settings)
        try:
            yield running, proc
        finally:
            stop_cloud(proc)
    finally:
        asyncio.run(drop_database(database))


def stop_cloud(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    """One aiostack for the whole session (tests create uniquely named resources)."""
    import asyncio

    database = asyncio.run(create_database())
    proc, running = start_cloud(tmp_path_factory.mktemp("cloud"), database)
    try:
        yield running
    finally:
        stop_cloud(proc)
        asyncio.run(drop_database(database))
        errors = [
            line for line in running.log_path.read_text().splitlines() if '"api.unhandled"' in line
        ]
        assert not errors, "the gateway crashed on requests:\n" + "\n".join(errors[:5])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# The two clouds bootstrap writes into clouds.yaml: the admin, and the demo project's member.
ADMIN, DEMO = "aiostack-admin", "aiostack"


def upload_tiny_image(cloud: RunningCloud, directory: Path, *options: str) -> str:
    """A tiny public raw image on ``cloud`` (``options``: more ``image create`` flags); its id."""
    data = directory / "tiny.raw"
    data.write_bytes(b"\0" * 4096)
    created = cloud.openstack(
        "image", "create", "--file", str(data), "--disk-format", "raw",
        "--container-format", "bare", "--public", *options, unique("cirros"),
    )  # fmt: skip
    return str(created["id"])


@pytest.fixture(scope="session")
def image(cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny public image any compute test may boot; no test changes or deletes it."""
    return upload_tiny_image(cloud, tmp_path_factory.mktemp("img"))


@pytest.fixture(scope="session")
def host(cloud: RunningCloud) -> str:
    """The compute host, once its agent has reported and it is up (seconds after start)."""
    compute = cloud.sdk().compute
    deadline = time.monotonic() + 40
    while True:
        found = [s for s in compute.services() if s.binary == "nova-compute"]
        if found and found[0].state == "up":
            return str(found[0].host)
        assert time.monotonic() < deadline, f"no compute host up: {found}"
        time.sleep(0.5)
