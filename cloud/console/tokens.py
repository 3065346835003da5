"""One-time, short-lived console tokens, bound to an instance, its host and the console's address.

Minted by the compute API when a user asks for a console URL, consumed by the console proxy when
the browser connects. Only a sha256 of the token is stored: the token itself lives in the URL the
user got and nowhere else. Consuming deletes the row whatever the outcome, so a token is used
once (a token tried with the wrong instance is burnt too: whoever holds it is not its owner's
browser). Time comes from an injectable clock, so tests can expire tokens without waiting.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cloud.store.conn import DbConnection

# Nova's [consoleauth] token_ttl.
DEFAULT_TTL_S = 600


class TokenRefused(Exception):
    """The token is unknown, already used, expired, or bound to another instance."""


@dataclass(frozen=True)
class ConsoleTarget:
    """What a token opens: ``instance_id``'s console on ``host``, listening at address:port."""

    instance_id: str
    host: str
    address: str
    port: int
    console_type: str = "novnc"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def mint(
    conn: DbConnection, target: ConsoleTarget, *, now: datetime, ttl_s: float = DEFAULT_TTL_S
) -> str:
    """A new token for ``target``, valid ``ttl_s`` seconds from ``now``; expired tokens go."""
    await conn.execute("DELETE FROM cmp_console_tokens WHERE expires_at <= $1", now)
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO cmp_console_tokens (token_hash, instance_id, host, address, port,
                                           console_type, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        token_hash(token),
        target.instance_id,
        target.host,
        target.address,
        target.port,
        target.console_type,
        now,
        now + timedelta(seconds=ttl_s),
    )
    return token


async def consume(
    conn: DbConnection, token: str, *, now: datetime, instance_id: str | None = None
) -> ConsoleTarget:
    """What ``token`` opens, used up; :class:`TokenRefused` when it opens nothing (any more).

    ``instance_id``: the instance the caller means (when it says); another one is refused.
    """
    if not token:
        raise TokenRefused("no token")
    row = await conn.fetchrow(
        """DELETE FROM cmp_console_tokens WHERE token_hash = $1
           RETURNING instance_id, host, address, port, console_type, expires_at""",
        token_hash(token),
    )
    if row is None:
        raise TokenRefused("unknown or already used token")
    if row["expires_at"] <= now:
        raise TokenRefused("expired token")
    if instance_id is not None and instance_id != row["instance_id"]:
        raise TokenRefused("token of another instance")
    return ConsoleTarget(
        instance_id=row["instance_id"],
        host=row["host"],
        address=row["address"],
        port=row["port"],
        console_type=row["console_type"],
    )
