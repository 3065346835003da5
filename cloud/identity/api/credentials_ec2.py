"""``/v3/users/{user_id}/credentials/OS-EC2``: EC2 access/secret pairs, one per user and project.

They are ``ec2`` credentials of ``/v3/credentials`` (id and ``key_hash`` the SHA-256 of the access
key), shown in the OS-EC2 shape: ``{"user_id", "tenant_id", "access", "secret", "trust_id"}``. An
access key is addressed by its plain value in the URL. Another user's key is a 404, as if it did
not exist.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import asyncpg
from pydantic import BaseModel, StrictStr

from cloud.api.router import ApiRequest
from cloud.identity.api import router
from cloud.identity.api.app_credentials import forbid_restricted
from cloud.identity.api.common import (
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    not_found,
    self_link,
)
from cloud.identity.api.credentials import (
    EC2,
    check_delegated_project,
    decrypt,
    encrypt,
    fernet,
    hash_access_key,
    in_delegated_scope,
    user_exists,
)
from cloud.identity.api.open_models import fetch_one
from cloud.store.conn import DbConnection
from schemas.identity import CredentialCreated, CredentialDeleted

BASE = "/users/{user_id}/credentials/OS-EC2"


class Ec2CredentialCreate(BaseModel):
    """``{"tenant_id": "<project id>"}``."""

    tenant_id: StrictStr


def _ec2_view(req: ApiRequest[Any], r: asyncpg.Record, blob: str) -> dict[str, Any]:
    data = json.loads(blob)
    return {
        "user_id": r["user_id"],
        "tenant_id": r["project_id"],
        "access": data.get("access"),
        "secret": data.get("secret"),
        "trust_id": data.get("trust_id"),
        "links": self_link(req, f"/users/{r['user_id']}/credentials/OS-EC2/{data.get('access')}"),
    }


async def _require_user(conn: DbConnection, user_id: str) -> None:
    if not await user_exists(conn, user_id):
        raise not_found("user", user_id)


@router.post(BASE, body=Ec2CredentialCreate, status=201)
async def create_ec2_credential(req: ApiRequest[Ec2CredentialCreate]) -> dict[str, Any]:
    """Create an EC2 access/secret pair for a user on a project."""
    user_id, project_id = req.params["user_id"], req.body.tenant_id
    enforce(
        req,
        "identity:ec2_create_credential",
        {"user_id": user_id, "credential": {"user_id": user_id}},
    )
    blob: dict[str, Any] = {
        "access": secrets.token_hex(16),
        "secret": secrets.token_hex(16),
        "trust_id": None,
    }
    if req.auth.app_cred_id is not None:
        blob["app_cred_id"] = req.auth.app_cred_id
    text = json.dumps(blob)
    credential_id = hash_access_key(blob["access"])
    stored = encrypt(fernet(req), text)
    async with (
        conflict_on_duplicate("credential", "the same access key"),
        identity(req).write() as uow,
    ):
        await forbid_restricted(req, uow.conn, "credentials")
        await _require_user(uow.conn, user_id)
        if not await uow.conn.fetchval("SELECT 1 FROM id_projects WHERE id = $1", project_id):
            raise not_found("project", project_id)
        check_delegated_project(req, project_id)
        row = await fetch_one(
            uow.conn,
            """INSERT INTO id_credentials (id, user_id, project_id, type, blob, key_hash)
               VALUES ($1, $2, $3, $4, $5, $1) RETURNING *""",
            credential_id,
            user_id,
            project_id,
            EC2,
            stored,
        )
        await uow.emit(
            CredentialCreated(
                resource_id=credential_id,
                attributes={"user_id": user_id, "project_id": project_id, "type": EC2},
            )
        )
    return {"credential": _ec2_view(req, row, text)}


@router.get(BASE)
async def list_ec2_credentials(req: ApiRequest[Any]) -> dict[str, Any]:
    """List a user's EC2 credentials."""
    user_id = req.params["user_id"]
    enforce(req, "identity:ec2_list_credentials", {"user_id": user_id})
    async with identity(req).store.pool.acquire() as conn:
        await _require_user(conn, user_id)
        rows = await conn.fetch(
            "SELECT * FROM id_credentials WHERE user_id = $1 AND type = $2 ORDER BY created_at, id",
            user_id,
            EC2,
        )
    rows = [r for r in rows if in_delegated_scope(req, r["project_id"])]
    views = []
    if rows:
        f = fernet(req)
        views = [_ec2_view(req, r, decrypt(f, r["blob"], r["id"])) for r in rows]
    return {"credentials": views, "links": collection_links(req)}


async def _addressed(req: ApiRequest[Any], conn: DbConnection, rule: str) -> asyncpg.Record:
    user_id, access = req.params["user_id"], req.params["access"]
    enforce(req, rule, {"user_id": user_id, "credential": {"user_id": user_id}})
    await _require_user(conn, user_id)
    credential_id = hash_access_key(access)
    row = await conn.fetchrow(
        "SELECT * FROM id_credentials WHERE id = $1 AND user_id = $2 AND type = $3",
        credential_id,
        user_id,
        EC2,
    )
    if row is None:
        raise not_found("credential", credential_id)
    check_delegated_project(req, row["project_id"])
    return row


@router.get(BASE + "/{access}")
async def get_ec2_credential(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show one of a user's EC2 credentials by access key."""
    async with identity(req).store.pool.acquire() as conn:
        row = await _addressed(req, conn, "identity:ec2_get_credential")
    return {"credential": _ec2_view(req, row, decrypt(fernet(req), row["blob"], row["id"]))}


@router.delete(BASE + "/{access}", status=204)
async def delete_ec2_credential(req: ApiRequest[Any]) -> None:
    """Delete one of a user's EC2 credentials by access key."""
    async with identity(req).write() as uow:
        row = await _addressed(req, uow.conn, "identity:ec2_delete_credential")
        await uow.conn.execute("DELETE FROM id_credentials WHERE id = $1", row["id"])
        await uow.emit(CredentialDeleted(resource_id=row["id"]))
