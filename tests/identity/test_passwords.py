"""argon2id password hashing off the event loop, and random secrets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cloud.identity import passwords
from cloud.identity.passwords import PasswordHasher, new_secret


@pytest.fixture
def hasher() -> PasswordHasher:
    # Small parameters: the tests check behaviour, not cost.
    return PasswordHasher(time_cost=1, memory_kib=1024, parallelism=1)


async def test_hash_and_verify(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("correct horse battery staple")
    assert encoded.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await hasher.verify(encoded, "correct horse battery staple") is True
    assert await hasher.verify(encoded, "correct horse battery stapler") is False
    assert await hasher.verify(encoded, "") is False


async def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    first, second = await asyncio.gather(hasher.hash("same"), hasher.hash("same"))
    assert first != second
    assert await hasher.verify(first, "same") and await hasher.verify(second, "same")


async def test_non_ascii_and_empty_passwords(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("pässwörd 🔑")
    assert await hasher.verify(encoded, "pässwörd 🔑")
    assert not await hasher.verify(encoded, "passwort 🔑")
    empty = await hasher.hash("")
    assert await hasher.verify(empty, "")
    assert not await hasher.verify(empty, " ")


async def test_hash_from_other_parameters_still_verifies(hasher: PasswordHasher) -> None:
    stronger = PasswordHasher(time_cost=2, memory_kib=2048, parallelism=2)
    encoded = await stronger.hash("secret")
    assert await hasher.verify(encoded, "secret")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$bad$bad",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$",  # no hash part
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",  # hash too short
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$ü",  # non-ASCII
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "!",  # a disabled-password marker
    ],
)
async def test_malformed_hash_is_false(hasher: PasswordHasher, encoded: str) -> None:
    assert await hasher.verify(encoded, "secret") is False


async def test_none_hash_is_false(hasher: PasswordHasher) -> None:
    assert await hasher.verify(None, "secret") is False  # type: ignore[arg-type]


class SlowHasher:
    """Stands in for argon2: blocks its thread and records which thread that was."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def _block(self) -> None:
        self.threads.append(threading.current_thread().name)
        time.sleep(0.2)

    def hash(self, password: str) -> str:
        self._block()
        return "$argon2id$fake"

    def verify(self, encoded: str, password: str) -> bool:
        self._block()
        return True


async def _ticks_while(awaitable: asyncio.Future[object] | asyncio.Task[object]) -> int:
    ticks = 0
    while not awaitable.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


async def test_work_runs_in_the_argon2_pool_off_the_loop(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = SlowHasher()
    monkeypatch.setattr(hasher, "_hasher", slow)

    verify: asyncio.Task[object] = asyncio.ensure_future(hasher.verify("$argon2id$x", "pw"))
    # 0.2 s of blocking in the worker: a free loop ticks about 20 times meanwhile, a blocked one
    # at most once. The margin is for slow, loaded CI machines.
    assert await _ticks_while(verify) >= 5
    assert verify.result() is True

    hashing: asyncio.Task[object] = asyncio.ensure_future(hasher.hash("pw"))
    assert await _ticks_while(hashing) >= 5

    assert len(slow.threads) == 2
    assert all(name.startswith("argon2") for name in slow.threads), slow.threads
    assert threading.current_thread().name not in slow.threads


async def test_real_verify_leaves_the_loop_responsive() -> None:
    # Real argon2, costly enough to take a noticeable time; the loop keeps running meanwhile.
    costly = PasswordHasher(time_cost=6, memory_kib=32768)
    encoded = await costly.hash("pw")
    verify: asyncio.Task[object] = asyncio.ensure_future(costly.verify(encoded, "pw"))
    # Verifying takes several 10 ms ticks; on the loop's own thread there would be at most one.
    assert await _ticks_while(verify) >= 3
    assert verify.result() is True


def test_the_pool_is_shared_and_dedicated() -> None:
    pool = passwords._hash_executor()
    assert pool is passwords._hash_executor()
    assert pool._thread_name_prefix == "argon2"


async def test_needs_rehash(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash("pw")
    assert hasher.needs_rehash(encoded) is False
    assert PasswordHasher(time_cost=1, memory_kib=1024).needs_rehash(encoded) is False
    assert PasswordHasher(time_cost=2, memory_kib=1024).needs_rehash(encoded) is True
    assert PasswordHasher(time_cost=1, memory_kib=2048).needs_rehash(encoded) is True
    assert PasswordHasher(time_cost=1, memory_kib=1024, parallelism=2).needs_rehash(encoded)
    assert PasswordHasher().needs_rehash(encoded) is True


@pytest.mark.parametrize("encoded", ["", "garbage", "$argon2id$v=19$m=x,t=1,p=1$a$b"])
def test_needs_rehash_of_a_malformed_hash(hasher: PasswordHasher, encoded: str) -> None:
    assert hasher.needs_rehash(encoded) is True


def test_default_parameters() -> None:
    encoded_prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
    hasher = PasswordHasher()
    assert not hasher.needs_rehash(encoded_prefix + "c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43)


def test_new_secret() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    for secret in secrets:
        assert len(secret) == 43  # 32 bytes
        assert set(secret) <= alphabet
    assert len(new_secret(16)) == 22
