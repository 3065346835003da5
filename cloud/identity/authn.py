"""Authentication: turn one ``POST /v3/auth/tokens`` body into a token payload.

Methods: password, token (rescope or renew within the original lifetime), application_credential.
Scopes: project, domain, system, or none. Every failure is the same 401 to the client (no hint of
which user exists), with the reason in the log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import ApiError
from cloud.identity import repo
from cloud.identity.service import Identity, TokenRejected
from cloud.identity.tokens import InvalidToken, TokenPayload, new_audit_id
from cloud.store.conn import DbConnection
from schemas.identity import UserLockedOut

log = structlog.get_logger("aiostack.identity.auth")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DomainRef(_Strict):
    id: str | None = None
    name: str | None = None


class UserRef(_Strict):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None
    password: str | None = None


class PasswordMethod(_Strict):
    user: UserRef


class TokenMethod(_Strict):
    id: str


class AppCredMethod(_Strict):
    id: str | None = None
    name: str | None = None
    user: UserRef | None = None
    secret: str


class IdentityBody(_Strict):
    methods: list[str] = Field(min_length=1)
    password: PasswordMethod | None = None
    token: TokenMethod | None = None
    application_credential: AppCredMethod | None = None


class ProjectRef(_Strict):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


class Scope(_Strict):
    project: ProjectRef | None = None
    domain: DomainRef | None = None
    system: dict[str, bool] | None = None


class Auth(_Strict):
    identity: IdentityBody
    scope: Scope | Literal["unscoped"] | None = None


class AuthRequest(_Strict):
    """The body of ``POST /v3/auth/tokens``."""

    auth: Auth


def _denied(reason: str, **fields: object) -> ApiError:
    log.info("identity.auth_failed", reason=reason, **fields)
    return ApiError(401, "The request you have made requires authentication.")


async def authenticate(identity: Identity, body: AuthRequest) -> TokenPayload:
    """Check the credentials and scope in ``body``; the payload of the token to issue."""
    ident = body.auth.identity
    methods = list(dict.fromkeys(ident.methods))
    if len(methods) != 1 or methods[0] not in ("password", "token", "application_credential"):
        raise ApiError(400, "Exactly one of the methods password, token, application_credential.")
    now = identity.clock.now().replace(microsecond=0)
    expires = now + identity.options.token_ttl
    audit_ids: tuple[str, ...] = (new_audit_id(),)
    app_cred_id: str | None = None
    app_cred_project: str | None = None
    async with identity.store.pool.acquire() as conn:
        if methods[0] == "password":
            if ident.password is None:
                raise ApiError(400, "Invalid input for field 'identity/password': missing.")
            user_id = await _password(identity, conn, ident.password.user)
        elif methods[0] == "token":
            if ident.token is None:
                raise ApiError(400, "Invalid input for field 'identity/token': missing.")
            try:
                parent = await identity.check(ident.token.id)
            except (InvalidToken, TokenRejected) as exc:
                raise _denied("bad token", error=str(exc)) from None
            if parent.app_cred_id is not None:
                raise _denied("rescoping an application credential token")
            user_id, expires = parent.user.id, min(expires, parent.expires_at)
            audit_ids = (audit_ids[0], parent.audit_ids[-1])
            methods = list(dict.fromkeys(["token", *parent.methods]))
        else:
            if ident.application_credential is None:
                raise ApiError(400, "Invalid input for field 'identity/application_credential'.")
            row = await _app_credential(identity, conn, ident.application_credential, now)
            user_id, app_cred_id, app_cred_project = row["user_id"], row["id"], row["project_id"]
            if row["expires_at"] is not None:
                expires = min(expires, row["expires_at"])
        scope = body.auth.scope if isinstance(body.auth.scope, Scope) else None
        project_id, domain_id, system = await _scope(conn, user_id, scope, app_cred_project)
    return TokenPayload(
        user_id=user_id,
        methods=tuple(methods),
        issued_at=identity.clock.now(),
        expires_at=expires,
        audit_ids=audit_ids,
        project_id=project_id,
        domain_id=domain_id,
        system=system,
        app_cred_id=app_cred_id,
    )


async def _find_user(conn: DbConnection, ref: UserRef) -> asyncpg.Record | None:
    if ref.id is not None:
        return await repo.user_by_id(conn, ref.id)
    if ref.name is None or ref.domain is None or (ref.domain.id is None and not ref.domain.name):
        raise ApiError(400, "A user is named by id, or by name and domain (id or name).")
    return await repo.user_by_name(conn, ref.name, ref.domain.id, ref.domain.name)


async def _password(identity: Identity, conn: DbConnection, ref: UserRef) -> str:
    if ref.password is None:
        raise ApiError(400, "Invalid input for field 'identity/password/user/password': missing.")
    user = await _find_user(conn, ref)
    if user is None:
        await identity.hasher.verify("", ref.password)  # same cost whether or not the user exists
        raise _denied("unknown user", user=ref.id or ref.name)
    if _locked_out(identity, user):
        raise ApiError(401, f"The account is locked for user: {user['id']}.")
    if not user["enabled"] or not user["domain_enabled"]:
        raise _denied("user disabled", user_id=user["id"])
    if not user["password_hash"] or not await identity.hasher.verify(
        user["password_hash"], ref.password
    ):
        await _count_failure(identity, user)
        raise _denied("wrong password", user_id=user["id"])
    if user["failed_auth_count"]:
        await conn.execute("UPDATE id_users SET failed_auth_count = 0 WHERE id = $1", user["id"])
    return str(user["id"])


def _locked_out(identity: Identity, user: asyncpg.Record) -> bool:
    limit = identity.options.lockout_attempts
    if not limit or user["failed_auth_count"] < limit or user["failed_auth_at"] is None:
        return False
    return bool(user["failed_auth_at"] + identity.options.lockout_duration > identity.clock.now())


async def _count_failure(identity: Identity, user: asyncpg.Record) -> None:
    limit = identity.options.lockout_attempts
    async with identity.write() as uow:
        count = await uow.conn.fetchval(
            """UPDATE id_users SET failed_auth_count = failed_auth_count + 1, failed_auth_at = $2
               WHERE id = $1 RETURNING failed_auth_count""",
            user["id"],
            identity.clock.now(),
        )
        if limit and count == limit:
            await uow.emit(UserLockedOut(resource_id=user["id"], attributes={"failures": count}))


async def _app_credential(
    identity: Identity, conn: DbConnection, ref: AppCredMethod, now: datetime
) -> asyncpg.Record:
    if ref.id is not None:
        row = await conn.fetchrow("SELECT * FROM id_app_credentials WHERE id = $1", ref.id)
    else:
        if ref.name is None or ref.user is None:
            raise ApiError(400, "An application credential is named by id, or name and user.")
        user = await _find_user(conn, ref.user)
        row = user and await conn.fetchrow(
            "SELECT * FROM id_app_credentials WHERE name = $1 AND user_id = $2",
            ref.name,
            user["id"],
        )
    if row is None:
        await identity.hasher.verify("", ref.secret)
        raise _denied("unknown application credential", id=ref.id, name=ref.name)
    if not await identity.hasher.verify(row["secret_hash"], ref.secret):
        raise _denied("wrong application credential secret", id=row["id"])
    if row["expires_at"] is not None and row["expires_at"] <= now:
        raise _denied("application credential expired", id=row["id"])
    user = await repo.user_by_id(conn, row["user_id"])
    if user is None or not user["enabled"] or not user["domain_enabled"]:
        raise _denied("application credential's user disabled", id=row["id"])
    return row


async def _scope(
    conn: DbConnection, user_id: str, scope: Scope | None, forced_project: str | None
) -> tuple[str | None, str | None, str | None]:
    """(project_id, domain_id, system) the user may scope to, or 401."""
    if forced_project is not None:
        wanted = scope.project if scope else None
        if scope and (scope.domain or scope.system):
            raise _denied("application credentials are project-scoped")
        if wanted and wanted.id not in (None, forced_project):
            raise _denied("application credential is for another project")
        scope = Scope(project=ProjectRef(id=forced_project))
    if scope is None or not (scope.project or scope.domain or scope.system):
        return None, None, None
    if sum(x is not None for x in (scope.project, scope.domain, scope.system)) > 1:
        raise ApiError(400, "Specify one scope: project, domain or system.")
    if scope.project is not None:
        ref = scope.project
        if ref.id is None and (ref.name is None or ref.domain is None):
            raise ApiError(400, "A project is named by id, or by name and domain.")
        row = await repo.project_by_ref(
            conn,
            ref.id,
            ref.name,
            ref.domain.id if ref.domain else None,
            ref.domain.name if ref.domain else None,
        )
        if row is None or not row["enabled"] or not row["domain_enabled"]:
            raise _denied("project missing or disabled", project=ref.id or ref.name)
        if not await repo.effective_roles(conn, user_id, "project", row["id"]):
            raise _denied("no role on project", user_id=user_id, project_id=row["id"])
        return row["id"], None, None
    if scope.domain is not None:
        drow = await repo.domain_by_ref(conn, scope.domain.id, scope.domain.name)
        if drow is None or not drow["enabled"]:
            raise _denied("domain missing or disabled")
        if not await repo.effective_roles(conn, user_id, "domain", drow["id"]):
            raise _denied("no role on domain", user_id=user_id, domain_id=drow["id"])
        return None, drow["id"], None
    if scope.system != {"all": True}:
        raise ApiError(400, 'The system scope is {"all": true}.')
    if not await repo.effective_roles(conn, user_id, "system", "all"):
        raise _denied("no role on system", user_id=user_id)
    return None, None, "all"
