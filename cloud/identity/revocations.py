"""Token revocation, visible at once to every gateway process.

Tokens are not stored. A revocation names what it kills (a token's audit id, a user, a project, a
domain or an application credential) and kills what was issued before it. Every identity write ends
with ``NOTIFY aiostack_identity``; each process LISTENs and reloads, and the writing process reloads
right after its own commit, so the next request it serves already sees the change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cloud.identity.tokens import TokenPayload
from cloud.store.conn import DbConnection

IDENTITY_CHANNEL = "aiostack_identity"


@dataclass(frozen=True, slots=True)
class Revocation:
    issued_before: datetime
    audit_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    app_cred_id: str | None = None

    def kills(self, token: TokenPayload, project_domain_id: str | None) -> bool:
        if token.issued_at > self.issued_before:
            return False
        if self.audit_id is not None:
            return self.audit_id in token.audit_ids
        if self.user_id is not None and self.user_id != token.user_id:
            return False
        if self.project_id is not None and self.project_id != token.project_id:
            return False
        if self.app_cred_id is not None and self.app_cred_id != token.app_cred_id:
            return False
        if self.domain_id is not None:
            return self.domain_id in (token.domain_id, project_domain_id)
        return True


class RevocationList:
    """The live revocations, indexed by what they name so a check is a few dict lookups."""

    def __init__(self, revocations: Iterable[Revocation] = ()) -> None:
        self._by_audit: dict[str, Revocation] = {}
        self._by_user: dict[str, list[Revocation]] = {}
        self._other: list[Revocation] = []
        for r in revocations:
            if r.audit_id is not None:
                self._by_audit[r.audit_id] = r
            elif r.user_id is not None:
                self._by_user.setdefault(r.user_id, []).append(r)
            else:
                self._other.append(r)

    def revoked(self, token: TokenPayload, project_domain_id: str | None) -> bool:
        for audit_id in token.audit_ids:
            hit = self._by_audit.get(audit_id)
            if hit is not None and hit.kills(token, project_domain_id):
                return True
        candidates = self._by_user.get(token.user_id, [])
        return any(r.kills(token, project_domain_id) for r in (*candidates, *self._other))

    @classmethod
    async def load(cls, conn: DbConnection, now: datetime) -> RevocationList:
        rows = await conn.fetch(
            """SELECT issued_before, audit_id, user_id, project_id, domain_id, app_cred_id
               FROM id_revocations WHERE expires_at > $1""",
            now,
        )
        return cls(Revocation(**dict(r)) for r in rows)


async def prune(conn: DbConnection, now: datetime) -> int:
    """Forget revocations whose victims have all expired; how many rows went."""
    status = await conn.execute("DELETE FROM id_revocations WHERE expires_at <= $1", now)
    return int(status.rsplit(" ", 1)[-1])


async def record(
    conn: DbConnection,
    *,
    now: datetime,
    keep_until: datetime,
    audit_id: str | None = None,
    user_id: str | None = None,
    project_id: str | None = None,
    domain_id: str | None = None,
    app_cred_id: str | None = None,
) -> None:
    """Revoke, within the caller's transaction; ``keep_until`` is when every victim has expired."""
    await conn.execute(
        """INSERT INTO id_revocations (audit_id, user_id, project_id, domain_id, app_cred_id,
                                       issued_before, revoked_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6, $7)""",
        audit_id,
        user_id,
        project_id,
        domain_id,
        app_cred_id,
        now,
        keep_until,
    )
