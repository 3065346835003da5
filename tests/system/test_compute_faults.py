"""Kill an actor in the middle of a burst of boots, restart it: nothing accepted is lost.

The cloud runs as separate processes on real RabbitMQ and PostgreSQL (gateway, registry,
scheduler, conductor, and one compute process with several fake hosts). Each test SIGKILLs one
actor while 30 boots go through the REST API, deletes a few servers while it is down, restarts it,
and checks: every accepted server ends ACTIVE, or ERROR with a fault; none stays in BUILD; every
delete completed; the claims are exactly the live instances' resources on each host. Deadlines are
short (settings) so a lost step would show up as an ERROR with a fault, not a hang.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from cloud.runtime.amqp import AmqpBus
from tests.conftest import AMQP_URL, dsn_for
from tests.system.conftest import ROOT, create_database, drop_database, free_port

BOOTS, DELETES, FAKE_HOSTS = 30, 5, 3
DEADLINES = {
    "CONDUCTOR_SCHEDULE_DEADLINE_S": "45",
    "CONDUCTOR_SPAWN_DEADLINE_S": "30",
    "CONDUCTOR_DELETE_DEADLINE_S": "30",
}
SETTLE_S = 90  # longer than any deadline above plus a restart


@dataclass
class Cloud:
    """The cloud's processes, by actor name; each can be killed and started again."""

    tmp: Path
    database: str
    namespace: str
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    image: str = ""  # the image every boot uses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOSTACK_", "OS_"))}
        env |= {
            "AIOSTACK_DATABASE_URL": dsn_for(self.database),
            "AIOSTACK_AMQP_URL": AMQP_URL,
            "AIOSTACK_BUS_NAMESPACE": self.namespace,
            "AIOSTACK_STATE_DIR": str(self.tmp / "state"),
            "AIOSTACK_LISTEN": f"127.0.0.1:{self.port}",
            "AIOSTACK_HOST": "faults",
            "AIOSTACK_LOG_FORMAT": "json",
            "AIOSTACK_ARGON2_MEMORY_KIB": "1024",
            "AIOSTACK_ARGON2_TIME_COST": "1",
            "AIOSTACK_COMPUTE_DRIVER": "fake",
            "AIOSTACK_FAKE_HOSTS": str(FAKE_HOSTS),
            "AIOSTACK_COMPUTE_REPORT_INTERVAL_S": "1",
        }
        return env | {f"AIOSTACK_{k}": v for k, v in DEADLINES.items()}

    def start(self, actor: str) -> None:
        log = (self.tmp / f"{actor}.log").open("ab")
        self.procs[actor] = subprocess.Popen(
            [sys.executable, "-m", "cloud.cli", "run", actor],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=log,
        )

    def kill(self, actor: str) -> None:
        proc = self.procs.pop(actor)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def check_alive(self) -> None:
        for actor, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.tmp / f"{actor}.log").read_text()[-3000:]
                raise AssertionError(f"{actor} exited {proc.returncode}:\n{log}")

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def go() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(dsn_for(self.database))
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(go())


def wait_for(check: Any, what: str, timeout: float, cloud: Cloud) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        cloud.check_alive()
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.2)


ACTORS = ("registry", "scheduler", "conductor", "compute")


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cloud, str]]:
    """The cloud as processes, plus an admin token; the first server proves every actor consumes."""
    tmp = tmp_path_factory.mktemp("faults")
    database = asyncio.run(create_database())
    cloud = Cloud(tmp, database, f"faults{uuid.uuid4().hex[:8]}", free_port())
    try:
        boot = subprocess.run(
            [sys.executable, "-m", "cloud.cli", "bootstrap"],
            cwd=ROOT,
            env=cloud.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert boot.returncode == 0, boot.stderr
        for actor in ("gateway", *ACTORS):
            cloud.start(actor)
        wait_for(lambda: _answers(cloud.url), "the gateway", 60, cloud)
        token = _token(cloud)
        cloud.image = _image(cloud, token)
        wait_for(
            lambda: cloud.query("SELECT count(*) AS n FROM cmp_hosts")[0]["n"] == FAKE_HOSTS,
            "host reports",
            60,
            cloud,
        )
        first = _boot(cloud, token, "warmup")
        wait_for(lambda: _status(cloud, [first])[first] == "ACTIVE", "the first boot", 60, cloud)
        yield cloud, token
    finally:
        cloud.stop_all()
        asyncio.run(_drop_topology(cloud.namespace))
        asyncio.run(drop_database(database))


async def _drop_topology(namespace: str) -> None:
    bus = AmqpBus(AMQP_URL, namespace=namespace)
    await bus.start()
    for queue in ("registry", "scheduler", "conductor", "compute.faults"):
        await bus.delete_queue(queue)
    await bus.delete_topology()
    await bus.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/identity/v3", timeout=2).ok
    except requests.ConnectionError:
        return False


def _token(cloud: Cloud) -> str:
    import yaml

    clouds = yaml.safe_load((cloud.tmp / "state" / "clouds.yaml").read_text())
    auth = clouds["clouds"]["aiostack-admin"]["auth"]
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": auth["username"],
                        "domain": {"name": auth.get("user_domain_name", "Default")},
                        "password": auth["password"],
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
    got = requests.post(cloud.url + "/identity/v3/auth/tokens", json=body, timeout=10)
    assert got.status_code == 201, got.text
    token = str(got.headers["X-Subject-Token"])
    project = got.json()["token"]["project"]["id"]
    unlimited = {"instances": -1, "cores": -1, "ram": -1}
    quota = requests.put(
        f"{cloud.url}/compute/v2.1/os-quota-sets/{project}",
        json={"quota_set": unlimited},
        headers={"X-Auth-Token": token},
        timeout=10,
    )
    if quota.status_code == 404:  # os-quota-sets not served (yet): the same override, directly
        for resource, limit in unlimited.items():
            cloud.query(
                """INSERT INTO cmp_quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)
                   ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = $3""",
                project,
                resource,
                limit,
            )
    else:
        assert quota.status_code == 200, quota.text
    return token


def _image(cloud: Cloud, token: str) -> str:
    headers = {"X-Auth-Token": token}
    created = requests.post(
        cloud.url + "/image/v2/images",
        json={
            "name": "faults",
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": "public",
        },
        headers=headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    image = str(created.json()["id"])
    uploaded = requests.put(
        f"{cloud.url}/image/v2/images/{image}/file",
        data=b"\0" * 4096,
        headers=headers | {"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert uploaded.status_code == 204, uploaded.text
    return image


def _boot(cloud: Cloud, token: str, name: str) -> str:
    got = requests.post(
        cloud.url + "/compute/v2.1/servers",
        json={"server": {"name": name, "imageRef": cloud.image, "flavorRef": "1"}},
        headers={"X-Auth-Token": token},
        timeout=30,
    )
    assert got.status_code == 202, got.text
    return str(got.json()["server"]["id"])


def _delete(cloud: Cloud, token: str, server: str) -> None:
    got = requests.delete(
        f"{cloud.url}/compute/v2.1/servers/{server}", headers={"X-Auth-Token": token}, timeout=30
    )
    assert got.status_code == 204, got.text


def _status(cloud: Cloud, servers: list[str]) -> dict[str, str]:
    rows = cloud.query(
        "SELECT id, status, task_state, deleted_at FROM cmp_instances WHERE id = ANY($1::text[])",
        servers,
    )
    return {
        r["id"]: "GONE" if r["deleted_at"] is not None else r["status"]
        for r in rows
        if r["deleted_at"] is not None or r["task_state"] is None
    } | {r["id"]: "BUSY" for r in rows if r["deleted_at"] is None and r["task_state"]}


def _burst_with_a_kill(cloud: Cloud, token: str, victim: str) -> tuple[list[str], list[str]]:
    """30 boots at concurrency 6; the victim dies after the 10th is accepted; 5 deletes meanwhile."""
    accepted: list[str] = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(_boot, cloud, token, f"burst-{i}") for i in range(BOOTS)]
        for future in as_completed(futures):
            accepted.append(future.result())
            if len(accepted) == 10:
                cloud.kill(victim)
    deleted = accepted[:DELETES]
    for server in deleted:
        _delete(cloud, token, server)
    time.sleep(1.0)  # the victim stays down a moment longer
    cloud.start(victim)
    return accepted, deleted


def _claims_match_live_instances(cloud: Cloud) -> None:
    live = {
        r["id"]
        for r in cloud.query(
            "SELECT id FROM cmp_instances WHERE deleted_at IS NULL AND vm_state <> 'error'"
        )
    }
    claimed = {r["instance_id"] for r in cloud.query("SELECT instance_id FROM cmp_claims")}
    assert claimed == live, f"claims without a live instance: {claimed - live}; " + (
        f"live instances without a claim: {live - claimed}"
    )
    hosts = cloud.query(
        """SELECT h.host, h.vcpus_used, h.ram_mb_used, h.disk_gb_used,
                  coalesce(sum(c.vcpus), 0) AS vcpus, coalesce(sum(c.ram_mb), 0) AS ram_mb,
                  coalesce(sum(c.disk_gb), 0) AS disk_gb
           FROM cmp_hosts h LEFT JOIN cmp_claims c ON c.host = h.host GROUP BY h.host"""
    )
    for h in hosts:
        assert (h["vcpus_used"], h["ram_mb_used"], h["disk_gb_used"]) == (
            h["vcpus"],
            h["ram_mb"],
            h["disk_gb"],
        ), f"host {h['host']}: usage does not match its claims"


@pytest.mark.parametrize("victim", ["scheduler", "conductor", "compute"])
def test_a_killed_actor_loses_no_accepted_request(faulty: tuple[Cloud, str], victim: str) -> None:
    cloud, token = faulty
    accepted, deleted = _burst_with_a_kill(cloud, token, victim)
    assert len(accepted) == BOOTS

    def settled() -> bool:
        seen = _status(cloud, accepted)
        return all(seen.get(s) == "GONE" for s in deleted) and all(
            seen.get(s) in ("ACTIVE", "ERROR") for s in accepted if s not in deleted
        )

    wait_for(settled, f"every server settled after killing the {victim}", SETTLE_S, cloud)
    errored = cloud.query(
        "SELECT id, fault FROM cmp_instances WHERE id = ANY($1::text[]) AND status = 'ERROR'",
        accepted,
    )
    assert all(r["fault"] for r in errored), "an ERROR server without a fault"
    # The outage is far shorter than every deadline: nothing had a reason to fail.
    assert not errored, f"servers failed after the {victim} came back: {errored[0]['fault']}"
    _claims_match_live_instances(cloud)

    # Clean up through the API: every delete completes and every claim goes back.
    survivors = [s for s in accepted if s not in deleted]
    for server in survivors:
        _delete(cloud, token, server)
    wait_for(
        lambda: all(v == "GONE" for v in _status(cloud, survivors).values()),
        "the deletes",
        SETTLE_S,
        cloud,
    )
    _claims_match_live_instances(cloud)


def test_every_fake_host_is_a_compute_service_and_a_hypervisor(faulty: tuple[Cloud, str]) -> None:
    cloud, token = faulty
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.53"}
    names = [f"faults-{i}" for i in range(1, FAKE_HOSTS + 1)]
    hypervisors = requests.get(
        cloud.url + "/compute/v2.1/os-hypervisors", headers=headers, timeout=10
    ).json()["hypervisors"]
    assert sorted(h["hypervisor_hostname"] for h in hypervisors) == names
    services = requests.get(
        cloud.url + "/compute/v2.1/os-services?binary=nova-compute", headers=headers, timeout=10
    ).json()["services"]
    assert sorted(s["host"] for s in services if s["binary"] == "nova-compute") == names
    assert all(s["state"] == "up" for s in services if s["binary"] == "nova-compute")
