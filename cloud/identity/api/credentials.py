"""``/v3/credentials``: secrets a user keeps in Keystone (EC2 keys, certificates, TOTP seeds...).

A credential's ``blob`` is a string the API stores encrypted with the credential keys (a
MultiFernet, separate from the token keys) and shows decrypted. An ``ec2`` credential's blob is a
JSON object with ``access`` and ``secret``; its id is the SHA-256 of the access key (as in
Keystone), and ``key_hash`` holds the same hash so the EC2 API finds it by access key
(:func:`ec2_secret`). The ``OS-EC2`` routes under ``/users/{user_id}`` live in
:mod:`cloud.identity.api.credentials_ec2`.

A token issued with an application credential only sees and touches credentials of its own
project, as Keystone enforces for delegated tokens.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from cryptography.fernet import InvalidToken, MultiFernet
from pydantic import BaseModel, StrictStr

from cloud.api.errors import ApiError
from cloud.api.listing import Where
from cloud.api.router import ApiRequest, QueryParam
from cloud.identity.api import router
from cloud.identity.api.app_credentials import forbid_restricted
from cloud.identity.api.common import (
    allowed,
    collection_links,
    conflict_on_duplicate,
    enforce,
    identity,
    not_found,
    self_link,
)
from cloud.identity.api.open_models import (
    OpenModel,
    dump_extra,
    fetch_one,
    load_extra,
    merged_extra,
)
from cloud.identity.keys import KeyRepository
from cloud.store.conn import DbConnection
from schemas.identity import CredentialCreated, CredentialDeleted, CredentialUpdated

log = structlog.get_logger("aiostack.identity.credentials")

EC2 = "ec2"


def hash_access_key(access: str) -> str:
    """An EC2 credential's id and ``key_hash``: the SHA-256 hex digest of its access key."""
    return hashlib.sha256(access.encode("utf-8")).hexdigest()


def fernet(req: ApiRequest[Any]) -> MultiFernet:
    keys = identity(req).credential_keys
    if keys is None:
        raise ApiError(503, "Credentials cannot be stored: no credential keys are configured.")
    return keys.fernet()


def encrypt(f: MultiFernet, blob: str) -> str:
    return f.encrypt(blob.encode("utf-8")).decode("ascii")


def decrypt(f: MultiFernet, stored: str, credential_id: str) -> str:
    try:
        return f.decrypt(stored.encode("ascii")).decode("utf-8")
    except InvalidToken:
        log.error("identity.credential_undecryptable", credential_id=credential_id)
        raise ApiError(
            500, f"Credential {credential_id} cannot be decrypted with the credential keys."
        ) from None


def _expecting(attribute: str) -> ApiError:
    return ApiError(
        400,
        f"Expecting to find {attribute} in credential. The server could not comply with the"
        " request since it is either malformed or otherwise incorrect. The client is assumed to"
        " be in error.",
    )


def ec2_blob(blob: str) -> dict[str, Any]:
    """The JSON object an ``ec2`` blob must be, with a string ``access``; 400 otherwise."""
    try:
        data = json.loads(blob)
    except ValueError:
        raise ApiError(400, "Invalid blob in credential") from None
    if not data or not isinstance(data, dict):
        raise _expecting("blob")
    access = data.get("access")
    if not isinstance(access, str):
        raise _expecting("access")
    try:
        access.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, "Invalid blob in credential: the access key is not valid text."
        ) from None
    return data


def check_delegated_project(req: ApiRequest[Any], project_id: str | None) -> None:
    """A token issued with an application credential may only act within its own project."""
    if req.auth.app_cred_id is not None and project_id != req.auth.project_id:
        raise ApiError(
            403,
            "You are not authorized to perform the requested action: Credential project does"
            " not match the project scope of the delegated token.",
        )


def in_delegated_scope(req: ApiRequest[Any], project_id: str | None) -> bool:
    return req.auth.app_cred_id is None or project_id == req.auth.project_id


async def user_exists(conn: DbConnection, user_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM id_users WHERE id = $1", user_id))


@dataclass(frozen=True, slots=True)
class Ec2Credential:
    """What the EC2 API needs to verify a request signed with ``access``."""

    user_id: str
    project_id: str
    secret: str
    app_cred_id: str | None = None


async def ec2_credential(
    conn: DbConnection, credential_keys: KeyRepository, access: str
) -> Ec2Credential | None:
    """The EC2 credential with access key ``access``, or None (unknown, or not usable)."""
    # Only ec2 credentials (of any spelling: "EC2" too, as Keystone accepts) have a key_hash.
    row = await conn.fetchrow(
        "SELECT id, user_id, project_id, blob FROM id_credentials WHERE key_hash = $1",
        hash_access_key(access),
    )
    if row is None or row["project_id"] is None:
        return None
    try:
        blob = json.loads(credential_keys.fernet().decrypt(row["blob"].encode("ascii")))
    except (InvalidToken, ValueError):
        log.error("identity.credential_undecryptable", credential_id=row["id"])
        return None
    if not isinstance(blob, dict) or not isinstance(blob.get("secret"), str):
        return None
    app_cred_id = blob.get("app_cred_id")
    return Ec2Credential(
        row["user_id"],
        row["project_id"],
        blob["secret"],
        app_cred_id if isinstance(app_cred_id, str) else None,
    )


async def ec2_secret(
    conn: DbConnection, credential_keys: KeyRepository, access: str
) -> tuple[str, str, str] | None:
    """``(user_id, project_id, secret)`` of the EC2 access key ``access``, or None."""
    found = await ec2_credential(conn, credential_keys, access)
    return None if found is None else (found.user_id, found.project_id, found.secret)


# -- /v3/credentials ------------------------------------------------------------------------------


class CredentialCreateFields(OpenModel):
    blob: StrictStr
    type: StrictStr
    user_id: StrictStr
    project_id: StrictStr | None = None
    id: StrictStr | None = None  # ignored: the server picks the id (for ec2, the access hash)


class CredentialCreate(BaseModel):
    """``{"credential": {"type": ..., "blob": ..., "user_id": ..., "project_id": ...}}``."""

    credential: CredentialCreateFields


class CredentialUpdateFields(OpenModel):
    blob: StrictStr = ""
    type: StrictStr = ""
    user_id: StrictStr = ""
    project_id: StrictStr | None = None


class CredentialUpdate(BaseModel):
    """``{"credential": {...}}`` with the attributes to change."""

    credential: CredentialUpdateFields


def _view(req: ApiRequest[Any], r: asyncpg.Record, blob: str) -> dict[str, Any]:
    return {
        **load_extra(r["extra"]),
        "id": r["id"],
        "user_id": r["user_id"],
        "project_id": r["project_id"],
        "type": r["type"],
        "blob": blob,
        "links": self_link(req, f"/credentials/{r['id']}"),
    }


def _attributes(r: asyncpg.Record) -> dict[str, Any]:
    """What an event may say of a credential: never its blob."""
    return {"user_id": r["user_id"], "project_id": r["project_id"], "type": r["type"]}


def _target(r: asyncpg.Record | None) -> dict[str, Any]:
    return {"credential": _attributes(r)} if r is not None else {}


@router.get("/credentials", query=(QueryParam("user_id"), QueryParam("type")))
async def list_credentials(req: ApiRequest[Any]) -> dict[str, Any]:
    """List the credentials the caller may see."""
    enforce(req, "identity:list_credentials", {"credential": {"user_id": req.auth.user.id}})
    where = Where().eq("user_id", req.query.get("user_id")).eq("type", req.query.get("type"))
    async with identity(req).store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM id_credentials {where.sql()} ORDER BY created_at, id", *where.args
        )
    visible = [
        r
        for r in rows
        if allowed(req, "identity:get_credential", _target(r))
        and in_delegated_scope(req, r["project_id"])
    ]
    views = []
    if visible:
        f = fernet(req)
        views = [_view(req, r, decrypt(f, r["blob"], r["id"])) for r in visible]
    return {"credentials": views, "links": collection_links(req)}


@router.post("/credentials", body=CredentialCreate, status=201, errors=(409,))
async def create_credential(req: ApiRequest[CredentialCreate]) -> dict[str, Any]:
    """Create a credential."""
    c = req.body.credential
    enforce(req, "identity:create_credential", {"credential": c.model_dump(exclude={"blob"})})
    ident = identity(req)
    blob, key_hash = c.blob, None
    credential_id = uuid.uuid4().hex
    if c.type.lower() == EC2:
        if not c.project_id:
            raise _expecting("project_id")
        data = ec2_blob(c.blob)
        credential_id = key_hash = hash_access_key(data["access"])
        if req.auth.app_cred_id is not None:
            blob = json.dumps(data | {"app_cred_id": req.auth.app_cred_id})
    check_delegated_project(req, c.project_id)
    stored = encrypt(fernet(req), blob)
    async with (
        conflict_on_duplicate("credential", f"id {credential_id}"),
        ident.write() as uow,
    ):
        if c.type.lower() == EC2:
            await forbid_restricted(req, uow.conn, "credentials")
        if not await user_exists(uow.conn, c.user_id):
            raise ApiError(400, f"Could not find user: {c.user_id}.")
        row = await fetch_one(
            uow.conn,
            """INSERT INTO id_credentials (id, user_id, project_id, type, blob, key_hash, extra)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING *""",
            credential_id,
            c.user_id,
            c.project_id,
            c.type,
            stored,
            key_hash,
            dump_extra(c.extras()),
        )
        await uow.emit(CredentialCreated(resource_id=credential_id, attributes=_attributes(row)))
    return {"credential": _view(req, row, blob)}


async def _existing(
    req: ApiRequest[Any], conn: DbConnection, rule: str, *, lock: bool = False
) -> asyncpg.Record:
    """The addressed credential once the caller may act on it (403 before 404, like Keystone)."""
    credential_id = req.params["credential_id"]
    lock_clause = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        f"SELECT * FROM id_credentials WHERE id = $1{lock_clause}", credential_id
    )
    enforce(req, rule, _target(row))
    if row is None:
        raise not_found("credential", credential_id)
    check_delegated_project(req, row["project_id"])
    return row


@router.get("/credentials/{credential_id}")
async def get_credential(req: ApiRequest[Any]) -> dict[str, Any]:
    """Show a credential, its blob decrypted."""
    async with identity(req).store.pool.acquire() as conn:
        row = await _existing(req, conn, "identity:get_credential")
    return {"credential": _view(req, row, decrypt(fernet(req), row["blob"], row["id"]))}


@router.patch("/credentials/{credential_id}", body=CredentialUpdate, errors=(409,))
async def update_credential(req: ApiRequest[CredentialUpdate]) -> dict[str, Any]:
    """Update a credential."""
    c = req.body.credential
    c.require_some("credential")
    c.require_id(req.params["credential_id"])
    given, extras = c.model_fields_set, c.extras()
    f = fernet(req)
    async with (
        conflict_on_duplicate("credential", "the same access key"),
        identity(req).write() as uow,
    ):
        row = await _existing(req, uow.conn, "identity:update_credential", lock=True)
        new = {
            k: getattr(c, k) if k in given else row[k] for k in ("user_id", "project_id", "type")
        }
        enforce(req, "identity:update_credential", {"credential": new})
        check_delegated_project(req, new["project_id"])
        old_blob = decrypt(f, row["blob"], row["id"])
        blob = c.blob if "blob" in given else old_blob
        key_hash = None
        if new["type"].lower() == EC2:
            if not new["project_id"]:
                raise _expecting("project_id")
            data = ec2_blob(blob)
            if row["type"].lower() == EC2:
                old = json.loads(old_blob)
                for key in ("trust_id", "app_cred_id", "access_token_id", "access_id"):
                    if old.get(key) != data.get(key):
                        raise ApiError(400, f"{key} can not be updated for credential")
            key_hash = hash_access_key(data["access"])
        row = await fetch_one(
            uow.conn,
            """UPDATE id_credentials SET user_id = $2, project_id = $3, type = $4, blob = $5,
                   key_hash = $6, extra = $7::jsonb WHERE id = $1 RETURNING *""",
            row["id"],
            new["user_id"],
            new["project_id"],
            new["type"],
            encrypt(f, blob) if "blob" in given else row["blob"],
            key_hash,
            merged_extra(row, extras),
        )
        await uow.emit(CredentialUpdated(resource_id=row["id"], attributes=_attributes(row)))
    return {"credential": _view(req, row, blob)}


@router.delete("/credentials/{credential_id}", status=204)
async def delete_credential(req: ApiRequest[Any]) -> None:
    """Delete a credential."""
    async with identity(req).write() as uow:
        row = await _existing(req, uow.conn, "identity:delete_credential", lock=True)
        await uow.conn.execute("DELETE FROM id_credentials WHERE id = $1", row["id"])
        await uow.emit(CredentialDeleted(resource_id=row["id"]))


from cloud.identity.api import credentials_ec2  # noqa: E402, F401  (registers OS-EC2)
