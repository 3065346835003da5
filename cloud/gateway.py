"""The API gateway: every service's API on one port, built from settings and a store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog
from aiohttp import web

from cloud.api.app import build_app
from cloud.api.policy import Policy
from cloud.compute import api as compute_api
from cloud.compute.service import ComputeService
from cloud.config import Settings
from cloud.identity import api as identity_api
from cloud.identity.bootstrap import bootstrap
from cloud.identity.keys import KeyRepository
from cloud.identity.passwords import PasswordHasher
from cloud.identity.policies import DEFAULT_RULES
from cloud.identity.service import Identity, IdentityOptions
from cloud.identity.tokens import TokenFormatter
from cloud.image import api as image_api
from cloud.image.service import ImageService
from cloud.store.db import Store

log = structlog.get_logger("aiostack.gateway")


def key_repository(settings: Settings) -> KeyRepository:
    return KeyRepository(settings.state_dir.resolve() / "fernet-keys")


def clouds_yaml_path(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "clouds.yaml"


def make_identity(settings: Settings, store: Store) -> Identity:
    keys = key_repository(settings)
    keys.ensure()
    credential_keys = KeyRepository(settings.state_dir.resolve() / "credential-keys")
    credential_keys.ensure()
    return Identity(
        store,
        TokenFormatter(keys),
        PasswordHasher(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib),
        Policy.from_file(DEFAULT_RULES, settings.policy_file),
        IdentityOptions(
            token_ttl=timedelta(seconds=settings.token_ttl_s),
            password_min_length=settings.password_min_length,
            lockout_attempts=settings.lockout_attempts,
            lockout_duration=timedelta(seconds=settings.lockout_duration_s),
        ),
        store.clock,
        credential_keys,
    )


async def run_bootstrap(settings: Settings, identity: Identity) -> Path:
    admin = settings.admin_password.get_secret_value() if settings.admin_password else None
    return await bootstrap(
        identity,
        base_url=settings.base_url(),
        region=settings.region,
        clouds_yaml=clouds_yaml_path(settings),
        admin_password=admin,
    )


@dataclass
class Gateway:
    """Serves the API until ``stop`` is set. ``bootstrap_if_empty``: what ``aiostack up`` does."""

    settings: Settings
    store: Store
    bootstrap_if_empty: bool = False
    on_ready: Callable[[str, Path | None], None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        identity = make_identity(self.settings, self.store)
        await identity.start(self.store.dsn)
        images = ImageService(self.settings, self.store)
        await images.start()
        compute = ComputeService(self.settings, self.store)
        await compute.start()
        clouds: Path | None = None
        try:
            if self.bootstrap_if_empty and not await self._bootstrapped():
                clouds = await run_bootstrap(self.settings, identity)
            app = build_app(
                [*identity_api.routers(), *image_api.routers(), *compute_api.routers()],
                identity,
                max_body_bytes=self.settings.api_max_body_bytes,
                identity_url=lambda _r: self.settings.base_url() + "/identity",
            )
            app[identity_api.IDENTITY] = identity
            app[image_api.IMAGES] = images
            app[compute_api.COMPUTE] = compute
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            host, _, port = self.settings.listen.rpartition(":")
            site = web.TCPSite(runner, host or None, int(port), reuse_address=True)
            await site.start()
            log.info("gateway.listening", url=self.settings.base_url(), listen=self.settings.listen)
            if self.on_ready is not None:
                self.on_ready(self.settings.base_url(), clouds)
            try:
                await stop.wait()
            finally:
                await runner.cleanup()
        finally:
            await compute.stop()
            await images.stop()
            await identity.stop()

    async def _bootstrapped(self) -> bool:
        async with self.store.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM id_domains)"))
