"""``/v3/auth/*``: issue, validate, check and revoke tokens; the caller's catalog and scopes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from cloud.api.context import AuthContext
from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity import repo, revocations
from cloud.identity.api import router
from cloud.identity.api.common import collection_links, enforce, identity, iso, self_link
from cloud.identity.authn import AuthRequest, authenticate
from cloud.identity.service import TokenRejected
from cloud.identity.tokens import InvalidToken
from schemas.identity import TokenRevoked

NOCATALOG = QueryParam("nocatalog", description="Leave the catalog out of the token body.")


def token_body(ctx: AuthContext, catalog: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A token as Keystone renders it."""
    user = ctx.user
    token: dict[str, Any] = {
        "methods": list(ctx.methods),
        "user": {
            "domain": {"id": user.domain_id, "name": user.domain_name},
            "id": user.id,
            "name": user.name,
            "password_expires_at": None,
        },
        "audit_ids": list(ctx.audit_ids),
        "expires_at": iso(ctx.expires_at),
        "issued_at": iso(ctx.issued_at),
    }
    if ctx.project is not None:
        p = ctx.project
        token["project"] = {
            "domain": {"id": p.domain_id, "name": p.domain_name},
            "id": p.id,
            "name": p.name,
        }
        token["is_domain"] = False
    elif ctx.domain is not None:
        token["domain"] = {"id": ctx.domain.id, "name": ctx.domain.name}
    elif ctx.system is not None:
        token["system"] = {ctx.system: True}
    if ctx.project or ctx.domain or ctx.system:
        token["roles"] = [{"id": r.id, "name": r.name} for r in ctx.roles]
    if ctx.app_cred is not None:
        token["application_credential"] = {
            "id": ctx.app_cred.id,
            "name": ctx.app_cred.name,
            "restricted": ctx.app_cred_restricted,
        }
    if catalog is not None:
        token["catalog"] = catalog if (ctx.project or ctx.domain or ctx.system) else []
    return {"token": token}


def _wants_catalog(req: ApiRequest[Any]) -> bool:
    return "nocatalog" not in req.query


@router.post("/auth/tokens", body=AuthRequest, status=201, auth=False, query=(NOCATALOG,))
async def issue_token(req: ApiRequest[AuthRequest]) -> web.Response:
    """Authenticate and issue a token (password, token or application credential)."""
    ident = identity(req)
    payload = await authenticate(ident, req.body)
    token = ident.tokens.issue(payload)
    try:
        ctx = await ident.check(token)
    except TokenRejected:
        raise ApiError(401, "The request you have made requires authentication.") from None
    catalog = await ident.catalog() if _wants_catalog(req) else None
    return web.json_response(
        token_body(ctx, catalog), status=201, headers={"X-Subject-Token": token}
    )


async def _subject(req: ApiRequest[Any]) -> AuthContext:
    subject = req.raw.headers.get("X-Subject-Token")
    if not subject:
        raise ApiError(400, "X-Subject-Token is required.")
    try:
        ctx = await identity(req).check(subject)
    except InvalidToken:
        raise ApiError(404, "Could not recognize Fernet token") from None
    except TokenRejected:
        raise ApiError(404, f"Could not find token: {subject}") from None
    return ctx


@router.get("/auth/tokens", query=(NOCATALOG,), errors=(404,))
async def validate_token(req: ApiRequest[Any]) -> web.Response:
    """Validate the token in ``X-Subject-Token`` and show it."""
    subject = await _subject(req)
    enforce(req, "identity:validate_token", {"token": {"user_id": subject.user.id}})
    body = await identity(req).rendered(
        subject, with_catalog=_wants_catalog(req), render=_render_token
    )
    return web.Response(
        body=body, content_type="application/json", headers={"X-Subject-Token": subject.token}
    )


def _render_token(ctx: AuthContext, catalog: list[dict[str, Any]] | None) -> bytes:
    return json.dumps(token_body(ctx, catalog), separators=(",", ":")).encode()


@router.head("/auth/tokens", errors=(404,))
async def check_token(req: ApiRequest[Any]) -> web.Response:
    """Check the token in ``X-Subject-Token`` (200 if valid)."""
    subject = await _subject(req)
    enforce(req, "identity:check_token", {"token": {"user_id": subject.user.id}})
    return web.Response(status=200)


@router.delete("/auth/tokens", status=204, errors=(404,))
async def revoke_token(req: ApiRequest[Any]) -> None:
    """Revoke the token in ``X-Subject-Token``, at once, on every gateway."""
    subject = await _subject(req)
    enforce(req, "identity:revoke_token", {"token": {"user_id": subject.user.id}})
    ident = identity(req)
    async with ident.write() as uow:
        await revocations.record(
            uow.conn,
            now=ident.clock.now(),
            keep_until=subject.expires_at,
            audit_id=subject.audit_ids[0],
        )
        await uow.emit(
            TokenRevoked(resource_id=subject.audit_ids[0], attributes={"user_id": subject.user.id})
        )


@router.get("/auth/catalog")
async def auth_catalog(req: ApiRequest[Any]) -> dict[str, Any]:
    """The service catalog of the caller's (scoped) token."""
    enforce(req, "identity:get_auth_catalog")
    if not (req.auth.project or req.auth.domain or req.auth.system):
        raise ApiError(403, "The service catalog requires a scoped token.")
    return {"catalog": await identity(req).catalog(), "links": self_link(req, "/auth/catalog")}


@router.get("/auth/projects")
async def auth_projects(req: ApiRequest[Any]) -> dict[str, Any]:
    """Projects the caller may scope a token to."""
    enforce(req, "identity:get_auth_projects")
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM id_projects WHERE enabled ORDER BY name")
        projects = [
            r
            for r in rows
            if await repo.effective_roles(conn, req.auth.user.id, "project", r["id"])
        ]
    return {
        "projects": [
            {
                "id": r["id"],
                "name": r["name"],
                "domain_id": r["domain_id"],
                "enabled": True,
                "description": r["description"],
                "is_domain": False,
                "parent_id": r["parent_id"] or r["domain_id"],
                "links": self_link(req, f"/projects/{r['id']}"),
            }
            for r in projects
        ],
        "links": collection_links(req),
    }


@router.get("/auth/domains")
async def auth_domains(req: ApiRequest[Any]) -> dict[str, Any]:
    """Domains the caller may scope a token to."""
    enforce(req, "identity:get_auth_domains")
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM id_domains WHERE enabled ORDER BY name")
        domains = [
            r for r in rows if await repo.effective_roles(conn, req.auth.user.id, "domain", r["id"])
        ]
    return {
        "domains": [
            {
                "id": r["id"],
                "name": r["name"],
                "enabled": True,
                "description": r["description"],
                "links": self_link(req, f"/domains/{r['id']}"),
            }
            for r in domains
        ],
        "links": collection_links(req),
    }


@router.get("/auth/system")
async def auth_system(req: ApiRequest[Any]) -> dict[str, Any]:
    """Whether the caller may scope a token to the system."""
    enforce(req, "identity:get_auth_system")
    async with identity(req).store.pool.acquire() as conn:
        has_role = bool(await repo.effective_roles(conn, req.auth.user.id, "system", "all"))
    return {"system": [{"all": True}] if has_role else [], "links": self_link(req, "/auth/system")}
