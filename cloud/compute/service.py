"""The compute service object shared by the compute API handlers.

One instance per gateway process: the settings, the store, the policy (Nova's defaults, see
:mod:`cloud.compute.policies`, overridden by the shared policy file) and the default flavors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import yaml

from cloud.api.policy import Policy, PolicyError
from cloud.compute.policies import DEFAULT_RULES
from cloud.config import Settings
from cloud.store.conn import DbConnection
from cloud.store.db import Store
from cloud.store.writes import UnitOfWork

# Nova's default per-user keypair quota (``[quota] key_pairs``); cmp_quotas may override it
# per project (resource ``key_pairs``).
DEFAULT_KEY_PAIRS = 100

# (id, name, vcpus, ram MiB, disk GiB): devstack's defaults.
DEFAULT_FLAVORS: tuple[tuple[str, str, int, int, int], ...] = (
    ("0", "m1.nano", 1, 128, 1),
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
)


def load_policy(settings: Settings) -> Policy:
    """Nova's defaults, overridden by the compute rules of the shared policy file (if any)."""
    path = settings.policy_file
    if path is None:
        return Policy(DEFAULT_RULES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy file {path} must map rule names to check strings")
    return Policy(DEFAULT_RULES, {k: v for k, v in data.items() if k in DEFAULT_RULES})


async def ensure_default_flavors(conn: DbConnection) -> None:
    """Create devstack's default flavors when there are no flavors at all; idempotent.

    Once any flavor exists the defaults are left alone, so an admin's deletes stick.
    """
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM cmp_flavors)"):
        return
    for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
        await conn.execute(
            "INSERT INTO cmp_flavors (id, name, vcpus, ram, disk) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT DO NOTHING",
            flavor_id,
            name,
            vcpus,
            ram,
            disk,
        )


class ComputeService:
    """Everything the compute API handlers share: the database, the policy, the settings."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.clock = store.clock
        self.policy = load_policy(settings)

    async def start(self) -> None:
        """Called once before the gateway serves."""
        async with self.store.pool.acquire() as conn:
            await ensure_default_flavors(conn)

    async def stop(self) -> None:
        """Called once after the gateway stopped serving."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[UnitOfWork]:
        """One compute transaction: rows on ``uow.conn`` plus the events it emits."""
        async with self.store.unit(source="compute") as uow:
            yield uow

    # -- servers (hooks of the servers/scheduler work go below this line) ---------------------
