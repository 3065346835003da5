"""``/os-keypairs``: a user's SSH (and x509) public keys.

Keypairs belong to a user, not a project. Importing checks the key and records Nova's fingerprint
(MD5 of the key blob for ssh, SHA-1 of the certificate for x509). Before 2.92 a create without
``public_key`` generates the pair and returns the private key once; from 2.92 keys are import
only. 2.2 adds ``type`` (and answers create 201, delete 204), 2.10 lets admins act for another
user (``user_id``), 2.35 pages the list (``limit``/``marker``), 2.92 allows ``@`` and ``.`` in
names.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.listing import next_url, parse_limit
from cloud.api.router import ApiRequest
from cloud.compute import policies, quotas
from cloud.compute.api import router
from cloud.compute.api.flavor_schema import invalid
from cloud.compute.api.flavors import enforce, service
from cloud.compute.api.keygen import fingerprint, generate
from cloud.compute.api.microversion import version
from cloud.store.conn import DbConnection
from schemas.compute_catalog import KeypairCreated, KeypairDeleted

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-")
MAX_LIMIT = 1000


class KeypairBody(BaseModel):
    """``{"keypair": {"name": ..., "public_key": ..., "type": ..., "user_id": ...}}``"""

    model_config = ConfigDict(extra="forbid")
    keypair: Any


def _check_name(name: Any, ver: tuple[int, int]) -> str:
    if not isinstance(name, str):
        raise invalid("name", name, f"{name!r} is not of type 'string'")
    chars = NAME_CHARS | {"@", "."} if ver >= (2, 92) else NAME_CHARS
    if not 1 <= len(name) <= 255 or not set(name) <= chars:
        raise invalid("name", name, f"{name!r} does not match the keypair name pattern")
    if name != name.strip():
        raise ApiError(400, "Keypair data is invalid: Keypair name contains unsafe characters")
    return name


def _parse(body: Any, ver: tuple[int, int]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("keypair", body, f"{body!r} is not of type 'object'")
    known = {"name", "public_key"} | ({"type"} if ver >= (2, 2) else set())
    known |= {"user_id"} if ver >= (2, 10) else set()
    extra = sorted(set(body) - known)
    if extra:
        names = ", ".join(repr(k) for k in extra)
        raise invalid(
            "keypair", body, f"Additional properties are not allowed ({names} unexpected)"
        )
    required = ("name", "public_key") if ver >= (2, 92) else ("name",)
    for key in required:
        if key not in body:
            raise invalid("keypair", body, f"'{key}' is a required property")
    public_key = body.get("public_key")
    if public_key is not None and (not isinstance(public_key, str) or len(public_key) > 65535):
        raise invalid("public_key", public_key, f"{public_key!r} is not a valid public key")
    key_type = body.get("type", "ssh")
    if key_type not in ("ssh", "x509"):
        raise invalid("type", key_type, f"{key_type!r} is not one of ['ssh', 'x509']")
    user_id = body.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not 1 <= len(user_id) <= 255):
        raise invalid("user_id", user_id, f"{user_id!r} is not a valid user id")
    name = _check_name(body["name"], ver)
    return {"name": name, "public_key": public_key, "type": key_type, "user_id": user_id}


def _view(row: asyncpg.Record | dict[str, Any], ver: tuple[int, int]) -> dict[str, Any]:
    out = {"name": row["name"], "public_key": row["public_key"], "fingerprint": row["fingerprint"]}
    if ver >= (2, 2):
        out["type"] = row["type"]
    return out


def _target_user(req: ApiRequest[Any], given: str | None, rule: str) -> str:
    """The user whose keypairs the request is about (``user_id`` from 2.10); policy checked."""
    user_id = given if given is not None and version(req) >= (2, 10) else req.auth.user.id
    enforce(req, rule, {"user_id": user_id, "project_id": req.auth.project_id})
    return user_id


async def _limit(conn: DbConnection, user_id: str, project_id: str | None) -> int:
    """The key_pairs quota: the project's override, else the default class's, else Nova's."""
    if project_id is None:
        return (await quotas.class_limits(conn))["key_pairs"]
    return (await quotas.limits_of(conn, project_id))["key_pairs"]


@router.post("/os-keypairs", body=KeypairBody, errors=(403, 409))
async def create_keypair(req: ApiRequest[KeypairBody]) -> web.Response:
    """Import a public key, or (before 2.92) generate a keypair and return its private key."""
    ver = version(req)
    fields = _parse(req.body.keypair, ver)
    user_id = _target_user(req, fields["user_id"], policies.KEYPAIR_CREATE)
    private_key: str | None = None
    public_key = fields["public_key"]
    if public_key is None:
        private_key, public_key, fp = generate(fields["type"], user_id)
    else:
        fp = fingerprint(public_key, fields["type"])
    async with service(req).write() as uow:
        await uow.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"cmp-keypairs:{user_id}"
        )
        count = await uow.conn.fetchval(
            "SELECT count(*) FROM cmp_keypairs WHERE user_id = $1", user_id
        )
        if count + 1 > await _limit(uow.conn, user_id, req.auth.project_id):
            raise ApiError(403, "Quota exceeded, too many key pairs.")
        row = await uow.conn.fetchrow(
            "INSERT INTO cmp_keypairs (user_id, name, type, public_key, fingerprint)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING *",
            user_id,
            fields["name"],
            fields["type"],
            public_key,
            fp,
        )
        if row is None:
            raise ApiError(409, f"Key pair '{fields['name']}' already exists.")
        await uow.emit(
            KeypairCreated(
                keypair_ref=f"{user_id}/{fields['name']}",
                user_id=user_id,
                name=fields["name"],
                type=fields["type"],
                fingerprint=fp,
                generated=private_key is not None,
            )
        )
    out = _view(row, ver) | {"user_id": user_id}
    if private_key is not None:
        out["private_key"] = private_key
    return web.json_response({"keypair": out}, status=201 if ver >= (2, 2) else 200)


@router.get("/os-keypairs", query=("user_id", "limit", "marker"), errors=(403,))
async def list_keypairs(req: ApiRequest[Any]) -> dict[str, Any]:
    """The caller's keypairs (an admin's: any user's with ``user_id``, 2.10)."""
    ver = version(req)
    user_id = _target_user(req, req.query.get("user_id"), policies.KEYPAIR_INDEX)
    paged = ver >= (2, 35)
    limit = parse_limit(req.query, default=MAX_LIMIT, maximum=MAX_LIMIT) if paged else None
    marker = req.query.get("marker") if paged else None
    async with service(req).store.pool.acquire() as conn:
        if marker is not None:
            found = await conn.fetchval(
                "SELECT 1 FROM cmp_keypairs WHERE user_id = $1 AND name = $2", user_id, marker
            )
            if found is None:
                raise ApiError(400, f"Marker {marker} could not be found.")
        rows = await conn.fetch(
            "SELECT * FROM cmp_keypairs WHERE user_id = $1 AND ($2::text IS NULL OR name > $2)"
            " ORDER BY name LIMIT $3",
            user_id,
            marker,
            limit,
        )
    out: dict[str, Any] = {"keypairs": [{"keypair": _view(r, ver)} for r in rows]}
    if limit is not None and rows and len(rows) == limit:
        href = next_url(req.url("/os-keypairs"), req.query, rows[-1]["name"])
        out["keypairs_links"] = [{"rel": "next", "href": href}]
    return out


async def _find(req: ApiRequest[Any], conn: DbConnection, user_id: str) -> asyncpg.Record:
    name = req.params["name"]
    row = await conn.fetchrow(
        "SELECT * FROM cmp_keypairs WHERE user_id = $1 AND name = $2", user_id, name
    )
    if row is None:
        raise ApiError(404, f"Keypair {name} not found for user {user_id}")
    return row


@router.get("/os-keypairs/{name}", query=("user_id",), errors=(403, 404))
async def show_keypair(req: ApiRequest[Any]) -> dict[str, Any]:
    """One keypair."""
    ver = version(req)
    user_id = _target_user(req, req.query.get("user_id"), policies.KEYPAIR_SHOW)
    async with service(req).store.pool.acquire() as conn:
        row = await _find(req, conn, user_id)
    out = _view(row, ver) | {
        "user_id": row["user_id"],
        "deleted": False,
        "created_at": row["created_at"].replace(tzinfo=None).isoformat(),
        "updated_at": None,
        "deleted_at": None,
        "id": row["id"],
    }
    return {"keypair": out}


@router.delete("/os-keypairs/{name}", query=("user_id",), errors=(403, 404))
async def delete_keypair(req: ApiRequest[Any]) -> web.Response:
    """Delete a keypair (202 before 2.2, 204 from 2.2)."""
    ver = version(req)
    user_id = _target_user(req, req.query.get("user_id"), policies.KEYPAIR_DELETE)
    async with service(req).write() as uow:
        row = await _find(req, uow.conn, user_id)
        await uow.conn.execute(
            "DELETE FROM cmp_keypairs WHERE user_id = $1 AND name = $2", user_id, row["name"]
        )
        await uow.emit(
            KeypairDeleted(
                keypair_ref=f"{user_id}/{row['name']}", user_id=user_id, name=row["name"]
            )
        )
    return web.Response(status=204 if ver >= (2, 2) else 202)
