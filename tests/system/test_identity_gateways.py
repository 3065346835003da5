"""Two gateway processes on one database: a revocation on one is in force on the other."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.system.conftest import RunningCloud, start_cloud, stop_cloud

CATALOG = "/identity/v3/auth/catalog"


@pytest.fixture(scope="module")
def second_gateway(
    cloud: RunningCloud, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningCloud]:
    """``aiostack run gateway`` sharing the first cloud's database and key directory."""
    proc, other = start_cloud(
        tmp_path_factory.mktemp("gateway2"),
        cloud.database,
        command=("run", "gateway"),
        state=cloud.state_dir,
    )
    try:
        yield other
    finally:
        stop_cloud(proc)


def status_until(url: str, token: str, wanted: int, within_s: float = 2.0) -> list[int]:
    """Statuses seen until ``wanted`` shows up (the first one is what a client sees at once)."""
    seen: list[int] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        seen.append(requests.get(url, headers={"X-Auth-Token": token}, timeout=5).status_code)
        if seen[-1] == wanted:
            break
        time.sleep(0.005)
    return seen


def test_revocation_on_one_gateway_holds_on_the_other(
    cloud: RunningCloud, second_gateway: RunningCloud
) -> None:
    token = cloud.sdk("aiostack").session.get_token()
    assert requests.get(second_gateway.url + CATALOG, headers={"X-Auth-Token": token}).ok

    admin = cloud.sdk("aiostack-admin").session.get_token()
    revoked = requests.delete(
        cloud.url + "/identity/v3/auth/tokens",
        headers={"X-Auth-Token": admin, "X-Subject-Token": token},
        timeout=5,
    )
    assert revoked.status_code == 204

    assert status_until(cloud.url + CATALOG, token, 401)[0] == 401  # same process: at once
    seen = status_until(second_gateway.url + CATALOG, token, 401)
    assert seen[-1] == 401, f"the other gateway still accepts the revoked token: {seen}"


def test_token_from_one_gateway_is_valid_on_the_other(
    cloud: RunningCloud, second_gateway: RunningCloud
) -> None:
    token = second_gateway.sdk("aiostack").session.get_token()
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    shown = requests.get(cloud.url + "/identity/v3/auth/tokens", headers=headers, timeout=5)
    assert shown.status_code == 200
    assert shown.json()["token"]["project"]["name"] == "demo"
