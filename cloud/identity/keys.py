"""The Fernet key repository: one key per file in a private directory, rotated Keystone-style.

Files are named by a non-negative integer. ``0`` is the *staged* key: every server already accepts
it, so when a rotation promotes it to primary, tokens it signs validate everywhere at once even if
other servers have not reloaded yet. The highest index is the *primary* key, which signs new
tokens. Every other index is a *secondary* key, kept only so tokens signed before a rotation stay
valid until the key is pruned. ``max_active_keys`` counts all of them: the default 3 keeps the
staged key, the primary and one secondary.

Other names in the directory (the ``.lock`` file, temporary files of an unfinished write) are
ignored. Keys are written to a temporary file and renamed into place, so a reader never sees a
half-written key, and a rotation in one process is picked up by the others within about a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

_LOCK_NAME = ".lock"
_TEMP_PREFIX = ".tmp-"
# A rotation in another process renames "0" away between our listing and our read; a re-list sees
# the new layout. More misses than this in a row mean something other than a rotation is going on.
_LOAD_ATTEMPTS = 50


class KeyRepositoryError(Exception):
    """The key directory is missing, empty, unreadable or holds something that is not a key."""


def _hint(directory: Path) -> str:
    return (
        f"no Fernet keys in {directory}: run `aiostack bootstrap` or `aiostack keys rotate` "
        "to create them"
    )


def _key_index(name: str) -> int | None:
    # isascii() too: str.isdigit() accepts other scripts' digits, which int() would then parse.
    if name.isascii() and name.isdigit():
        return int(name)
    return None


class KeyRepository:
    """Fernet keys in a directory, one file per key named by an integer, Keystone-style:
    0 is the staged key (next primary), the highest index is the primary, the others are secondary.

    ``fernet()`` caches the loaded keys and re-checks the directory at most once per
    ``recheck_interval`` seconds of ``monotonic`` time (both injectable for tests). The check sees
    keys added, removed or renamed; a key file edited in place is only seen after ``reload()``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_active_keys: int = 3,
        monotonic: Callable[[], float] = time.monotonic,
        recheck_interval: float = 1.0,
    ) -> None:
        if max_active_keys < 2:
            # Fewer than a staged key plus a primary defeats the point of staging.
            raise ValueError(f"max_active_keys must be at least 2, not {max_active_keys}")
        self.directory = Path(directory)
        self.max_active_keys = max_active_keys
        self._monotonic = monotonic
        self._recheck_interval = recheck_interval
        self._cache_lock = threading.Lock()
        self._fernet: MultiFernet | None = None
        self._signature: object = None
        self._checked_at = -math.inf

    # -- writing -------------------------------------------------------------------------------

    def ensure(self) -> bool:
        """Create the directory (0700) with a primary key 1 and a staged key 0 if it holds no keys.

        Returns True if it created the keys, False if keys were already there. Safe to call from
        several processes at once: only one of them creates keys.
        """
        self._make_directory()
        with self._exclusive():
            self._remove_stale_temp_files()
            if self._indices():
                return False
            # Primary first: if we die between the two writes, the directory still holds a usable
            # primary, and the next rotate() stages the missing key 0.
            self._write_key(1)
            self._write_key(0)
            self._sync_directory()
        self._expire_cache()
        return True

    def rotate(self) -> int:
        """Promote the staged key to primary, stage a fresh key 0 and prune the oldest secondaries.

        Returns the new primary's index. Creates the directory and keys if there are none (so the
        first rotate of an empty repository gives the same layout as ``ensure()``). Servers reading
        the directory meanwhile always see whole keys: every change is a rename.
        """
        self._make_directory()
        with self._exclusive():
            self._remove_stale_temp_files()
            indices = self._indices()
            if 0 not in indices:
                # Nothing staged (a new repository, or key 0 removed by hand): stage a key now so
                # that there is one to promote below.
                self._write_key(0)
                indices.add(0)
            new_primary = max(indices) + 1
            # Write the next staged key before touching "0", so the window in which the directory
            # has no key 0 is only the gap between two renames.
            staged = self._write_temp(Fernet.generate_key())
            os.rename(self._path(0), self._path(new_primary))
            os.replace(staged, self._path(0))
            # Oldest first. The staged key is not in the list, and the new primary, last, is out of
            # reach because max_active_keys >= 2.
            non_staged = [*sorted(i for i in indices if i != 0), new_primary]
            excess = len(non_staged) + 1 - self.max_active_keys
            for index in non_staged[: max(excess, 0)]:
                self._path(index).unlink(missing_ok=True)
            self._sync_directory()
        self._expire_cache()
        return new_primary

    def _make_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            return
        # mkdir's mode is filtered through the umask; set it exactly.
        os.chmod(self.directory, 0o700)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise writers (ensure/rotate) across processes and threads; readers never lock."""
        fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _remove_stale_temp_files(self) -> None:
        # Only lock holders create temp files, so under the lock any that exist were left by a
        # writer that died mid-write.
        for entry in os.scandir(self.directory):
            if entry.name.startswith(_TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def _write_key(self, index: int) -> None:
        os.replace(self._write_temp(Fernet.generate_key()), self._path(index))

    def _write_temp(self, key: bytes) -> Path:
        path = self.directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the creation mode is filtered through the umask
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def _sync_directory(self) -> None:
        # Make the renames durable: a crash must not bring back a key that was already promoted.
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _path(self, index: int) -> Path:
        return self.directory / str(index)

    # -- reading -------------------------------------------------------------------------------

    def _indices(self) -> set[int]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise KeyRepositoryError(
                f"cannot read the key directory {self.directory}: {exc}"
            ) from exc
        return {i for i in map(_key_index, names) if i is not None}

    def keys(self) -> list[bytes]:
        """Read the keys from disk: the primary first, then the rest by descending index, staged
        (0) last. Raises KeyRepositoryError if there are none or one is not a Fernet key."""
        for _ in range(_LOAD_ATTEMPTS):
            indices = sorted(self._indices(), reverse=True)
            if not indices:
                raise KeyRepositoryError(_hint(self.directory))
            keys: list[bytes] = []
            try:
                for index in indices:
                    keys.append(self._read_key(index))
            except FileNotFoundError:
                # Renamed or pruned by a concurrent rotation: list again once it had a moment
                # (a rotation is a few renames; only back-to-back rotations make us wait at all).
                time.sleep(0.001)
                continue
            return keys
        raise KeyRepositoryError(f"the keys in {self.directory} keep changing while being read")

    def _read_key(self, index: int) -> bytes:
        path = self._path(index)
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyRepositoryError(f"cannot read the Fernet key {path}: {exc}") from exc
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise KeyRepositoryError(f"{path} does not hold a Fernet key") from exc
        return key

    def _current_signature(self) -> object:
        """What changes whenever a key file is added, removed, renamed or replaced.

        The directory's mtime alone can miss a second change made within the same timestamp tick,
        so the key names and inodes (free from scandir) are part of it too.
        """
        try:
            mtime = os.stat(self.directory).st_mtime_ns
            entries = frozenset(
                (entry.name, entry.inode())
                for entry in os.scandir(self.directory)
                if _key_index(entry.name) is not None
            )
        except FileNotFoundError:
            raise KeyRepositoryError(_hint(self.directory)) from None
        except OSError as exc:
            raise KeyRepositoryError(
                f"cannot read the key directory {self.directory}: {exc}"
            ) from exc
        return (mtime, entries)

    def fernet(self) -> MultiFernet:
        """The keys as a MultiFernet (encrypts with the primary, decrypts with any key).

        Cached; the directory is re-checked at most once per ``recheck_interval`` and the keys are
        re-read only if it changed.
        """
        now = self._monotonic()
        with self._cache_lock:
            if self._fernet is not None and now - self._checked_at < self._recheck_interval:
                return self._fernet
            # Take the signature before reading: a change during the read then shows up as a
            # difference at the next check instead of being recorded as already seen.
            signature = self._current_signature()
            if self._fernet is None or signature != self._signature:
                self._fernet = MultiFernet([Fernet(key) for key in self.keys()])
                self._signature = signature
            self._checked_at = now
            return self._fernet

    def reload(self) -> MultiFernet:
        """Re-read the keys now, whatever the cache says."""
        with self._cache_lock:
            self._fernet = None
            self._checked_at = -math.inf
        return self.fernet()

    def _expire_cache(self) -> None:
        # Our own writes should be visible to this object at once, not after the recheck interval.
        with self._cache_lock:
            self._checked_at = -math.inf
