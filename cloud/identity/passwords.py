"""Password hashing with argon2id, off the event loop, and random secrets.

Hashing is deliberately slow (tens of milliseconds, ~19 MiB each with the defaults), so it runs in
a thread pool of its own: a burst of logins then queues behind other logins, not in front of every
other ``asyncio.to_thread`` user in the process.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _hash_executor() -> ThreadPoolExecutor:
    """The process-wide argon2 pool, created on first use (not at import, so importing this module
    in a CLI or a forked worker starts no threads)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 2, thread_name_prefix="argon2"
            )
        return _executor


class PasswordHasher:
    """argon2id; hashing and verifying run in a thread so the event loop never blocks.

    The defaults are OWASP's minimum for argon2id (m=19 MiB, t=2, p=1).
    """

    def __init__(
        self, *, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )

    async def hash(self, password: str) -> str:
        """An encoded argon2id hash of ``password`` (``$argon2id$v=19$m=...``), freshly salted."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_hash_executor(), self._hasher.hash, password)

    async def verify(self, encoded: str, password: str) -> bool:
        """Whether ``password`` matches ``encoded``. False on a mismatch and on an empty or
        malformed hash (a user without a usable password), never an exception for those."""
        if not isinstance(encoded, str) or not encoded:
            return False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_hash_executor(), self._verify, encoded, password)

    def _verify(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        # VerificationError covers a mismatch and corrupt hash contents; ValueError covers
        # InvalidHashError (not an argon2 hash) and a non-ASCII hash string.
        except (VerificationError, InvalidHashError, ValueError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        """Whether ``encoded`` was made with other parameters than this hasher's (so it should be
        replaced after the next successful login). True for a hash that cannot be parsed."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except (InvalidHashError, ValueError):
            return True


def new_secret(nbytes: int = 32) -> str:
    """A random urlsafe secret of ``nbytes`` random bytes (for application credential and EC2
    secrets): 43 characters with the default 32 bytes."""
    return secrets.token_urlsafe(nbytes)
