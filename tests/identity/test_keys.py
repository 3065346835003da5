"""The Fernet key repository: layout, rotation, pruning, file modes and cross-process reloads."""

from __future__ import annotations

import os
import stat
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from cloud.identity.keys import KeyRepository, KeyRepositoryError
from cloud.identity.tokens import InvalidToken, TokenFormatter, TokenPayload, new_audit_id


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def payload() -> TokenPayload:
    now = datetime.now(UTC)
    return TokenPayload(
        user_id=uuid.uuid4().hex,
        methods=("password",),
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        audit_ids=(new_audit_id(),),
        project_id=uuid.uuid4().hex,
    )


def key_files(directory: Path) -> list[str]:
    return sorted((p.name for p in directory.iterdir() if p.name.isdigit()), key=int)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_creates_staged_and_primary_keys(tmp_path: Path) -> None:
    directory = tmp_path / "keys" / "fernet"
    repo = KeyRepository(directory)
    assert repo.ensure() is True
    assert key_files(directory) == ["0", "1"]
    keys = repo.keys()
    assert keys == [(directory / "1").read_bytes(), (directory / "0").read_bytes()]
    for key in keys:
        Fernet(key)  # a valid Fernet key
    assert keys[0] != keys[1]


def test_ensure_is_idempotent(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "keys")
    assert repo.ensure() is True
    before = repo.keys()
    assert repo.ensure() is False
    assert KeyRepository(tmp_path / "keys").ensure() is False
    assert repo.keys() == before
    assert key_files(tmp_path / "keys") == ["0", "1"]


def test_file_modes_ignore_the_umask(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    old_umask = os.umask(0)
    try:
        repo = KeyRepository(directory)
        repo.ensure()
        repo.rotate()
    finally:
        os.umask(old_umask)
    assert mode(directory) == 0o700
    for name in key_files(directory):
        assert mode(directory / name) == 0o600, name


def test_ensure_keeps_an_existing_directory_and_fills_it(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "README").write_text("not a key")
    repo = KeyRepository(directory)
    assert repo.ensure() is True
    assert key_files(directory) == ["0", "1"]
    assert len(repo.keys()) == 2  # the README is ignored


@pytest.mark.parametrize("create", [False, True], ids=["missing", "empty"])
def test_no_keys_is_a_clear_error(tmp_path: Path, create: bool) -> None:
    directory = tmp_path / "keys"
    if create:
        directory.mkdir()
    repo = KeyRepository(directory)
    with pytest.raises(KeyRepositoryError, match=r"aiostack bootstrap.*aiostack keys rotate"):
        repo.keys()
    with pytest.raises(KeyRepositoryError, match="aiostack bootstrap"):
        repo.fernet()


def test_a_file_that_is_not_a_key_is_reported(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path)
    repo.ensure()
    (tmp_path / "1").write_bytes(b"not a fernet key")
    with pytest.raises(KeyRepositoryError, match="does not hold a Fernet key"):
        repo.keys()


def test_max_active_keys_must_be_at_least_two(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        KeyRepository(tmp_path, max_active_keys=1)
    KeyRepository(tmp_path, max_active_keys=2)


def test_rotate_promotes_the_staged_key(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path)
    repo.ensure()
    old_primary, staged = repo.keys()
    assert repo.rotate() == 2
    keys = repo.keys()
    assert keys[0] == staged  # the staged key is the new primary
    assert keys[1] == old_primary  # the old primary is now a secondary
    assert keys[2] not in (staged, old_primary)  # a fresh staged key
    assert (tmp_path / "2").read_bytes() == staged
    assert key_files(tmp_path) == ["0", "1", "2"]


def test_keys_order_is_primary_then_descending_then_staged(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path, max_active_keys=5)
    repo.ensure()
    for _ in range(3):
        repo.rotate()
    assert key_files(tmp_path) == ["0", "1", "2", "3", "4"]
    expected = [(tmp_path / name).read_bytes() for name in ("4", "3", "2", "1", "0")]
    assert repo.keys() == expected


def test_rotate_prunes_the_oldest_secondaries(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path, max_active_keys=3)
    repo.ensure()
    assert repo.rotate() == 2
    assert key_files(tmp_path) == ["0", "1", "2"]
    assert repo.rotate() == 3
    assert key_files(tmp_path) == ["0", "2", "3"]
    assert repo.rotate() == 4
    assert key_files(tmp_path) == ["0", "3", "4"]

    minimal = KeyRepository(tmp_path / "minimal", max_active_keys=2)
    minimal.ensure()
    assert minimal.rotate() == 2
    assert key_files(tmp_path / "minimal") == ["0", "2"]


def test_rotate_creates_keys_in_an_empty_repository(tmp_path: Path) -> None:
    directory = tmp_path / "new"
    repo = KeyRepository(directory)
    assert repo.rotate() == 1
    assert key_files(directory) == ["0", "1"]
    assert mode(directory) == 0o700


def test_rotate_without_a_staged_key(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path)
    repo.ensure()
    repo.rotate()
    (tmp_path / "0").unlink()
    assert repo.rotate() == 3
    assert key_files(tmp_path) == ["0", "2", "3"]


def test_rotate_removes_temp_files_left_by_a_crash(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path)
    repo.ensure()
    (tmp_path / ".tmp-deadbeef").write_bytes(b"half a key")
    repo.rotate()
    assert not list(tmp_path.glob(".tmp-*"))


def test_token_survives_rotations_until_its_key_is_pruned(tmp_path: Path) -> None:
    # max_active_keys counts the staged key and the primary too, as in Keystone: with 3, a token
    # outlives one rotation; with 4, two.
    for max_active, rotations_survived in ((3, 1), (4, 2)):
        repo = KeyRepository(tmp_path / str(max_active), max_active_keys=max_active)
        repo.ensure()
        formatter = TokenFormatter(repo)
        original = payload()
        token = formatter.issue(original)
        for _ in range(rotations_survived):
            repo.rotate()
            assert formatter.parse(token) == original
        repo.rotate()
        with pytest.raises(InvalidToken):
            formatter.parse(token)


def test_token_issued_after_rotate_uses_only_the_new_primary(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path / "all")
    repo.ensure()
    staged = repo.keys()[-1]
    repo.rotate()
    issued = payload()
    token = TokenFormatter(repo).issue(issued)

    # A repository holding nothing but the former staged key can read it.
    only_primary = tmp_path / "only-primary"
    only_primary.mkdir()
    (only_primary / "1").write_bytes(staged)
    assert TokenFormatter(KeyRepository(only_primary)).parse(token) == issued

    # And one holding every key but that one cannot.
    others = tmp_path / "others"
    others.mkdir()
    all_keys = repo.keys()
    for index, key in enumerate(k for k in all_keys if k != staged):
        (others / str(index)).write_bytes(key)
    with pytest.raises(InvalidToken):
        TokenFormatter(KeyRepository(others)).parse(token)


def test_another_repository_object_sees_a_rotation_after_the_recheck_interval(
    tmp_path: Path,
) -> None:
    writer = KeyRepository(tmp_path)
    writer.ensure()
    clock = FakeMonotonic()
    reader = KeyRepository(tmp_path, monotonic=clock)
    cached = reader.fernet()
    assert reader.fernet() is cached

    writer.rotate()
    token = TokenFormatter(writer).issue(payload())  # signed with key 2, the former staged key
    clock.now += 0.5
    assert reader.fernet() is cached  # not rechecked yet
    clock.now += 0.5
    refreshed = reader.fernet()
    assert refreshed is not cached
    TokenFormatter(reader).parse(token)
    assert len(reader.keys()) == 3

    clock.now += 10
    assert reader.fernet() is refreshed  # rechecked, nothing changed: same object


def test_reload_forces_a_recheck(tmp_path: Path) -> None:
    writer = KeyRepository(tmp_path)
    writer.ensure()
    reader = KeyRepository(tmp_path, monotonic=FakeMonotonic())
    reader.fernet()
    writer.rotate()
    writer.rotate()
    token = TokenFormatter(writer).issue(payload())
    reader.reload()
    TokenFormatter(reader).parse(token)


def test_own_rotation_is_visible_at_once(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path, monotonic=FakeMonotonic())
    repo.ensure()
    formatter = TokenFormatter(repo)
    formatter.parse(formatter.issue(payload()))
    staged = repo.keys()[-1]
    repo.rotate()
    token = formatter.issue(payload())  # no clock movement needed
    assert Fernet(staged).decrypt(token + "=" * (-len(token) % 4))


def test_the_repository_disappearing_is_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    repo = KeyRepository(directory, monotonic=FakeMonotonic())
    repo.ensure()
    repo.fernet()
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    with pytest.raises(KeyRepositoryError, match="aiostack bootstrap"):
        repo.reload()


def test_reading_during_concurrent_rotations_never_fails(tmp_path: Path) -> None:
    repo = KeyRepository(tmp_path, max_active_keys=3)
    repo.ensure()
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        reader = KeyRepository(tmp_path, recheck_interval=0)
        while not stop.is_set():
            try:
                assert len(reader.keys()) >= 1
                reader.fernet()
                reads += 1
            except BaseException as exc:  # collected and re-raised in the test
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    rotators = [
        threading.Thread(target=lambda: [repo.rotate() for _ in range(15)]) for _ in range(2)
    ]
    for thread in readers + rotators:
        thread.start()
    for thread in rotators:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    assert reads > 0
    # 30 rotations after ensure: the last promoted index is 31, and pruning kept three keys.
    assert key_files(tmp_path) == ["0", "30", "31"]
