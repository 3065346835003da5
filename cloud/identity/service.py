"""The identity service object: token validation (cached, revocation-aware) and the write path.

One instance per gateway process. Every identity write goes through :meth:`Identity.write`, which
commits the projection, the event and a ``NOTIFY``; then this process refreshes at once and the
others when the notification reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from cloud.api.context import AuthContext, Named
from cloud.api.errors import ApiError
from cloud.api.policy import Policy
from cloud.identity import repo, revocations
from cloud.identity.keys import KeyRepository
from cloud.identity.passwords import PasswordHasher
from cloud.identity.revocations import IDENTITY_CHANNEL, RevocationList
from cloud.identity.tokens import InvalidToken, TokenFormatter, TokenPayload
from cloud.runtime.backoff import Backoff
from cloud.runtime.clock import Clock
from cloud.store.conn import DbConnection
from cloud.store.db import Store
from cloud.store.writes import UnitOfWork

log = structlog.get_logger("aiostack.identity")


@dataclass(frozen=True)
class IdentityOptions:
    token_ttl: timedelta = timedelta(hours=1)
    password_min_length: int = 0
    lockout_attempts: int = 0  # 0: never lock out
    lockout_duration: timedelta = timedelta(minutes=30)
    token_cache_size: int = 10_000
    revocation_prune_interval: timedelta = timedelta(minutes=10)


class TokenRejected(Exception):
    """A token that is well formed but no longer good (expired, revoked, its owner disabled)."""


class Identity:
    """Validates tokens for the whole gateway and owns identity's write path."""

    def __init__(
        self,
        store: Store,
        tokens: TokenFormatter,
        hasher: PasswordHasher,
        policy: Policy,
        options: IdentityOptions,
        clock: Clock,
        credential_keys: KeyRepository | None = None,
    ) -> None:
        self.store, self.tokens, self.hasher, self.policy = store, tokens, hasher, policy
        # Encrypts credential blobs (EC2 secrets) at rest; separate from the token keys.
        self.credential_keys = credential_keys
        self.options, self.clock = options, clock
        self.revocations = RevocationList()
        self._validated: OrderedDict[str, AuthContext] = OrderedDict()
        # Token bodies as GET /auth/tokens answers them, by (token, with catalog); same life as
        # _validated: rendering the catalog on every validation costs more than the check itself.
        self._rendered: OrderedDict[tuple[str, bool], bytes] = OrderedDict()
        self._catalog: list[dict[str, Any]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, dsn: str | None = None) -> None:
        """Load revocations; with ``dsn``, also follow other processes' changes (LISTEN)."""
        await self.refresh()
        if dsn is not None:
            self._listener = asyncio.create_task(self._listen(dsn), name="identity-listener")
            self._pruner = asyncio.create_task(self._prune_revocations(), name="identity-pruner")

    async def stop(self) -> None:
        for task in (self._listener, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _prune_revocations(self) -> None:
        """Every gateway prunes now and then; the deletes are idempotent, so they may overlap."""
        while True:
            try:
                async with self.store.pool.acquire() as conn:
                    pruned = await revocations.prune(conn, self.clock.now())
                if pruned:
                    log.info("identity.revocations_pruned", rows=pruned)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("identity.prune_failed", error=str(exc))
            await asyncio.sleep(self.options.revocation_prune_interval.total_seconds())

    async def _listen(self, dsn: str) -> None:
        backoff = Backoff(first_s=0.2, max_s=10.0)
        while True:
            try:
                conn = await asyncpg.connect(dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("identity.listen_failed", error=str(exc))
                await asyncio.sleep(backoff.next())
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(IDENTITY_CHANNEL, self._notified)
                await self.refresh()  # whatever changed while we were not listening
                backoff = Backoff(first_s=0.2, max_s=10.0)
                await lost.wait()
                log.warning("identity.listen_lost")
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    def _notified(self, *_args: object) -> None:
        self._drop_caches()
        asyncio.get_running_loop().create_task(self.refresh())

    def _drop_caches(self) -> None:
        self._validated.clear()
        self._rendered.clear()
        self._catalog = None

    async def refresh(self) -> None:
        """Reload revocations and forget cached validations (after any identity change)."""
        self._drop_caches()
        async with self._refresh_lock:
            async with self.store.pool.acquire() as conn:
                self.revocations = await RevocationList.load(conn, self.clock.now())
            self._drop_caches()

    # -- writes -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[UnitOfWork]:
        """One identity transaction; every gateway sees its effect once it returns."""
        async with self.store.unit(source="identity") as uow:
            yield uow
            await uow.conn.execute("SELECT pg_notify($1, '')", IDENTITY_CHANNEL)
        await self.refresh()

    def keep_revocation_until(self) -> datetime:
        return self.clock.now() + self.options.token_ttl + timedelta(seconds=60)

    # -- reads --------------------------------------------------------------------------------

    async def catalog(self) -> list[dict[str, Any]]:
        if self._catalog is None:
            async with self.store.pool.acquire() as conn:
                self._catalog = await repo.catalog(conn)
        return self._catalog

    async def rendered(
        self,
        ctx: AuthContext,
        *,
        with_catalog: bool,
        render: Callable[[AuthContext, list[dict[str, Any]] | None], bytes],
    ) -> bytes:
        """The token's body as ``render`` makes it, cached until the next identity change."""
        key = (ctx.token, with_catalog)
        body = self._rendered.get(key)
        if body is None:
            body = render(ctx, await self.catalog() if with_catalog else None)
            if len(self._rendered) >= self.options.token_cache_size:
                self._rendered.popitem(last=False)
            self._rendered[key] = body
        return body

    async def validate(self, token: str) -> AuthContext:
        """The gateway's check of ``X-Auth-Token``: 401 in every failure case."""
        try:
            return await self.check(token)
        except (InvalidToken, TokenRejected) as exc:
            raise ApiError(401, "The request you have made requires authentication.") from exc

    async def check(self, token: str) -> AuthContext:
        """The token's context, or ``InvalidToken`` (garbage) / ``TokenRejected`` (no longer good)."""
        now = self.clock.now()
        cached = self._validated.get(token)
        if cached is not None:
            if cached.expires_at <= now:
                raise TokenRejected("token expired")
            return cached
        payload = self.tokens.parse(token)
        if payload.expires_at <= now:
            raise TokenRejected("token expired")
        async with self.store.pool.acquire() as conn:
            context = await self._context(conn, token, payload)
        if len(self._validated) >= self.options.token_cache_size:
            self._validated.popitem(last=False)
        self._validated[token] = context
        return context

    async def _context(self, conn: DbConnection, token: str, p: TokenPayload) -> AuthContext:
        user = await repo.user_by_id(conn, p.user_id)
        if user is None or not user["enabled"] or not user["domain_enabled"]:
            raise TokenRejected("user gone or disabled")
        project = domain = None
        project_domain_id: str | None = None
        if p.project_id is not None:
            row = await repo.project_by_ref(conn, p.project_id, None, None, None)
            if row is None or not row["enabled"] or not row["domain_enabled"]:
                raise TokenRejected("project gone or disabled")
            project_domain_id = row["domain_id"]
            project = Named(row["id"], row["name"], row["domain_id"], row["domain_name"])
            roles = await repo.effective_roles(conn, p.user_id, "project", p.project_id)
        elif p.domain_id is not None:
            row = await repo.domain_by_ref(conn, p.domain_id, None)
            if row is None or not row["enabled"]:
                raise TokenRejected("domain gone or disabled")
            domain = Named(row["id"], row["name"])
            roles = await repo.effective_roles(conn, p.user_id, "domain", p.domain_id)
        elif p.system is not None:
            roles = await repo.effective_roles(conn, p.user_id, "system", p.system)
        else:
            roles = []
        if self.revocations.revoked(p, project_domain_id):
            raise TokenRejected("token revoked")
        app_cred: asyncpg.Record | None = None
        if p.app_cred_id is not None:
            app_cred = await conn.fetchrow(
                "SELECT id, name, roles, unrestricted FROM id_app_credentials"
                " WHERE id = $1 AND user_id = $2",
                p.app_cred_id,
                p.user_id,
            )
            if app_cred is None:
                raise TokenRejected("application credential gone")
            roles = [r for r in roles if r["id"] in app_cred["roles"]]
        scoped = p.project_id or p.domain_id or p.system
        if scoped and not roles:
            raise TokenRejected("no role on the scope any more")
        return AuthContext(
            token=token,
            user=Named(user["id"], user["name"], user["domain_id"], user["domain_name"]),
            methods=p.methods,
            audit_ids=p.audit_ids,
            issued_at=p.issued_at,
            expires_at=p.expires_at,
            roles=tuple(Named(r["id"], r["name"]) for r in roles),
            project=project,
            domain=domain,
            system=p.system,
            app_cred_id=p.app_cred_id,
            app_cred=Named(app_cred["id"], app_cred["name"]) if app_cred else None,
            app_cred_restricted=not app_cred["unrestricted"] if app_cred else True,
        )
