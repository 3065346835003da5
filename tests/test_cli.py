"""The ``aiostack`` command, run as users run it (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from cloud.runtime.amqp import AmqpBus
from tests.conftest import AMQP_URL
from tests.system.conftest import free_port

AIOSTACK = [sys.executable, "-m", "cloud.cli"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIOSTACK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "aiostack.toml"
    config.write_text('prefetch = 7\nhost = "from-file"\n')
    got = cli(
        "--config",
        str(config),
        "config",
        "show",
        env={
            "AIOSTACK_AMQP_URL": "amqp://guest:s3cret@broker:5672/",
            "AIOSTACK_HOST": "from-env",
        },
    )
    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)
    assert shown["amqp_url"] == "amqp://guest:***@broker:5672/"
    assert "s3cret" not in got.stdout
    assert shown["prefetch"] == 7, "file values apply"
    assert shown["host"] == "from-env", "environment beats the file"


def test_bad_configuration_is_a_clear_error() -> None:
    got = cli("config", "show", env={"AIOSTACK_PREFETCH": "lots"})
    assert got.returncode != 0 and "bad configuration" in got.stderr and "prefetch" in got.stderr


async def _up_until_started(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *AIOSTACK,
        "up",
        "--state-dir",
        str(tmp_path / "state"),
        "--host",
        "cli-node",
        "--listen",
        f"127.0.0.1:{free_port()}",
        env={**os.environ, "AIOSTACK_ARGON2_MEMORY_KIB": "1024", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []

    async def read_until(marker: str) -> None:
        while True:
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
            assert line, "aiostack up exited early:\n" + "".join(lines)
            lines.append(line)
            if marker in line:
                return

    await asyncio.wait_for(read_until('"service.up"'), 30)
    if not any('"aiostack.ready"' in line for line in lines):
        await asyncio.wait_for(read_until('"aiostack.ready"'), 30)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(read_until("supervisor.stopped"), 30)
    code = await asyncio.wait_for(proc.wait(), 30)
    return code, "".join(lines)


async def test_up_runs_registers_and_stops_on_sigterm(database: str, tmp_path: Path) -> None:
    code, output = await _up_until_started({"AIOSTACK_DATABASE_URL": database}, tmp_path)
    assert code == 0, output
    first = json.loads(output.splitlines()[0])
    assert "correlation_id" not in first or first["correlation_id"]
    assert '"bus.inproc"' in output, "no AMQP URL: the in-process bus, and the log says so"
    for line in output.splitlines():
        if '"service.up"' in line:
            record = json.loads(line)
            assert record["actor"] == "registry" and record["correlation_id"]
            assert record["kind"] == "service.heartbeat"
    conn = await asyncpg.connect(database)
    try:
        kinds = [r["kind"] for r in await conn.fetch("SELECT kind FROM events")]
        assert "service.marked_up" in kinds
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0, "outbox flushed on stop"
    finally:
        await conn.close()
    tail = cli("events", "tail", "--kind", "service.*", env={"AIOSTACK_DATABASE_URL": database})
    assert tail.returncode == 0, tail.stderr
    shown = [json.loads(line) for line in tail.stdout.splitlines() if line.startswith('{"seq"')]
    assert shown and all(e["kind"].startswith("service.") for e in shown)


async def test_up_over_rabbitmq(database: str, tmp_path: Path) -> None:
    env = {
        "AIOSTACK_DATABASE_URL": database,
        "AIOSTACK_AMQP_URL": AMQP_URL,
        "AIOSTACK_BUS_NAMESPACE": f"cli{os.getpid()}",
    }
    try:
        code, output = await _up_until_started(env, tmp_path)
    finally:
        leftover = AmqpBus(AMQP_URL, namespace=env["AIOSTACK_BUS_NAMESPACE"])
        await leftover.start()
        await leftover.delete_queue("registry")
        await leftover.delete_topology()
        await leftover.close()
    assert code == 0, output
    assert '"bus.amqp"' in output and "guest:***@" in output


def test_db_upgrade_is_idempotent(database: str) -> None:
    got = cli("db", "upgrade", env={"AIOSTACK_DATABASE_URL": database})
    assert got.returncode == 0, got.stderr
    assert "database is up to date" in got.stdout


def test_bootstrap_writes_clouds_yaml_and_keys_rotate(database: str, tmp_path: Path) -> None:
    env = {
        "AIOSTACK_DATABASE_URL": database,
        "AIOSTACK_STATE_DIR": str(tmp_path),
        "AIOSTACK_ARGON2_MEMORY_KIB": "1024",
    }
    first = cli("bootstrap", env=env)
    assert first.returncode == 0, first.stderr
    clouds = tmp_path / "clouds.yaml"
    assert f"wrote {clouds}" in first.stdout
    before = clouds.read_text()
    again = cli("bootstrap", env=env)
    assert again.returncode == 0, again.stderr
    assert clouds.read_text() == before, "a second bootstrap keeps the passwords"
    keys = sorted(p.name for p in (tmp_path / "fernet-keys").iterdir() if p.name.isdigit())
    assert keys == ["0", "1"]
    rotated = cli("keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "primary key is now 2" in rotated.stdout
