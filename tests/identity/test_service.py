"""Identity's authentication and validation on a real database, with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cloud.api.errors import ApiError
from cloud.api.policy import Policy
from cloud.identity import revocations
from cloud.identity.authn import AuthRequest, authenticate
from cloud.identity.bootstrap import CATALOG, bootstrap
from cloud.identity.keys import KeyRepository
from cloud.identity.passwords import PasswordHasher
from cloud.identity.policies import DEFAULT_RULES
from cloud.identity.service import Identity, IdentityOptions, TokenRejected
from cloud.identity.tokens import TokenFormatter
from cloud.runtime.clock import ManualClock
from cloud.store.db import Store


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
async def identity(store: Store, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Identity]:
    keys = KeyRepository(tmp_path / "keys")
    keys.ensure()
    ident = Identity(
        store,
        TokenFormatter(keys),
        PasswordHasher(time_cost=1, memory_kib=1024),
        Policy(DEFAULT_RULES),
        IdentityOptions(lockout_attempts=3, lockout_duration=timedelta(minutes=5)),
        clock,
    )
    await ident.start()
    await bootstrap(
        ident,
        base_url="http://cloud.test",
        region="RegionOne",
        clouds_yaml=tmp_path / "clouds.yaml",
        admin_password="s3cret-admin",
    )
    yield ident
    await ident.stop()


def password_auth(password: str, project: str | None = "admin") -> AuthRequest:
    body: dict[str, object] = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": "admin", "domain": {"id": "default"}, "password": password}
            },
        }
    }
    if project is not None:
        body["scope"] = {"project": {"name": project, "domain": {"name": "Default"}}}
    return AuthRequest.model_validate({"auth": body})


async def issue(identity: Identity, request: AuthRequest) -> str:
    return identity.tokens.issue(await authenticate(identity, request))


async def test_bootstrap_is_idempotent_and_writes_both_clouds(
    identity: Identity, tmp_path: Path
) -> None:
    again = await bootstrap(
        identity,
        base_url="http://cloud.test",
        region="RegionOne",
        clouds_yaml=tmp_path / "clouds.yaml",
    )
    clouds = yaml.safe_load(again.read_text())["clouds"]
    assert set(clouds) == {"aiostack", "aiostack-admin"}
    assert clouds["aiostack-admin"]["auth"]["password"] == "s3cret-admin"
    assert clouds["aiostack-admin"]["auth"]["auth_url"] == "http://cloud.test/identity"
    assert oct(again.stat().st_mode & 0o777) == "0o600"
    async with identity.store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM id_users") == 2
        endpoints = await conn.fetchval("SELECT count(*) FROM id_endpoints")
    assert endpoints == 3 * len(CATALOG), "public, internal and admin for every service"
    async with identity.store.pool.acquire() as conn:
        kinds = await conn.fetch("SELECT kind FROM events WHERE kind LIKE 'identity.%'")
    assert sum(k["kind"] == "identity.user.created" for k in kinds) == 2


async def test_admin_token_carries_implied_roles(identity: Identity) -> None:
    context = await identity.check(await issue(identity, password_auth("s3cret-admin")))
    assert sorted(context.role_names) == ["admin", "member", "reader"]
    assert context.project is not None and context.project.name == "admin"


async def test_expired_token_is_rejected(identity: Identity, clock: ManualClock) -> None:
    token = await issue(identity, password_auth("s3cret-admin"))
    await identity.check(token)
    clock.advance(3600 + 1)
    with pytest.raises(TokenRejected):
        await identity.check(token)
    with pytest.raises(ApiError) as raised:
        await identity.validate(token)
    assert raised.value.status == 401


async def test_revocation_kills_earlier_tokens_only(identity: Identity, clock: ManualClock) -> None:
    before = await identity.check(await issue(identity, password_auth("s3cret-admin")))
    clock.advance(0.001)
    async with identity.write() as uow:
        await revocations.record(
            uow.conn,
            now=clock.now(),
            keep_until=identity.keep_revocation_until(),
            user_id=before.user.id,
        )
    clock.advance(0.001)  # same second, later microsecond
    after = await issue(identity, password_auth("s3cret-admin"))
    with pytest.raises(TokenRejected):
        await identity.check(before.token)
    assert (await identity.check(after)).user.id == before.user.id


async def test_revocations_are_pruned_once_every_victim_expired(
    identity: Identity, clock: ManualClock
) -> None:
    async with identity.write() as uow:
        await revocations.record(
            uow.conn, now=clock.now(), keep_until=identity.keep_revocation_until(), user_id="u1"
        )
    async with identity.store.pool.acquire() as conn:
        assert await revocations.prune(conn, clock.now()) == 0  # its victims may still be alive
        clock.advance(3600 + 61)
        assert await revocations.prune(conn, clock.now()) == 1
        assert await conn.fetchval("SELECT count(*) FROM id_revocations WHERE user_id = 'u1'") == 0


async def test_token_method_rescopes_within_the_original_lifetime(
    identity: Identity, clock: ManualClock
) -> None:
    unscoped = await identity.check(await issue(identity, password_auth("s3cret-admin", None)))
    assert unscoped.project is None and unscoped.roles == ()
    clock.advance(600)
    rescope = AuthRequest.model_validate(
        {
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": unscoped.token}},
                "scope": {"project": {"name": "demo", "domain": {"id": "default"}}},
            }
        }
    )
    with pytest.raises(ApiError):  # admin holds no role on demo
        await authenticate(identity, rescope)
    rescope.auth.scope.project.name = "admin"  # type: ignore[union-attr]
    scoped = await identity.check(await issue(identity, rescope))
    assert scoped.methods == ("token", "password")
    assert scoped.expires_at == unscoped.expires_at
    assert scoped.audit_ids[1] == unscoped.audit_ids[0]


async def test_lockout_after_failures_then_release(identity: Identity, clock: ManualClock) -> None:
    for _ in range(3):
        with pytest.raises(ApiError) as wrong:
            await authenticate(identity, password_auth("nope"))
        assert wrong.value.status == 401
    with pytest.raises(ApiError) as locked:
        await authenticate(identity, password_auth("s3cret-admin"))
    assert "locked" in locked.value.message
    clock.advance(5 * 60 + 1)
    assert (await authenticate(identity, password_auth("s3cret-admin"))).project_id


async def test_unknown_user_and_wrong_password_look_the_same(identity: Identity) -> None:
    ghost = password_auth("whatever").model_copy(deep=True)
    ghost.auth.identity.password.user.name = "ghost"  # type: ignore[union-attr]
    errors = []
    for request in (ghost, password_auth("wrong")):
        with pytest.raises(ApiError) as raised:
            await authenticate(identity, request)
        errors.append((raised.value.status, raised.value.message))
    assert errors[0] == errors[1] == (401, "The request you have made requires authentication.")
