"""``/servers/{id}/metadata[/{key}]``: a server's key/value metadata (Nova v2.1).

Every write changes the row and emits ``compute.instance.metadata_changed`` in one transaction.
At most :data:`METADATA_ITEMS` items (Nova's ``metadata_items`` quota default); keys 1-255
characters, values at most 255.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE, router
from cloud.compute.api.server_access import check_unlocked, locked_server, scope_of
from cloud.conductor import states
from schemas.compute import InstanceMetadataChanged

METADATA_ITEMS = 128
# Nova's check_instance_state for metadata updates: these vm_states, no task running.
_WRITABLE = (states.ACTIVE, states.STOPPED, "paused", "suspended")


class MetadataBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, str]


class MetaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meta: dict[str, str]


def _check(items: dict[str, str]) -> None:
    for key, value in items.items():
        if not 1 <= len(key) <= 255:
            raise ApiError(400, "Metadata property key greater than 255 characters or empty.")
        if len(value) > 255:
            raise ApiError(400, "Metadata property value greater than 255 characters.")
    if len(items) > METADATA_ITEMS:
        raise ApiError(403, f"Quota exceeded for metadata_items: allowed {METADATA_ITEMS}.")


async def _read(req: ApiRequest[Any]) -> dict[str, str]:
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.pool.acquire() as conn:
        raw = await conn.fetchval(
            """SELECT metadata::text FROM cmp_instances
               WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)""",
            server_id,
            scope_of(req),
        )
    if raw is None:
        raise ApiError(404, f"Instance {server_id} could not be found.")
    return dict(json.loads(raw))


async def _write(req: ApiRequest[Any], change: Any, action: str) -> dict[str, str]:
    """Lock the server, apply ``change(current) -> new`` and store it with its event."""
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await locked_server(
            uow.conn,
            server_id,
            scope_of(req),
            "project_id, vm_state, task_state, metadata::text AS metadata, locked_by",
        )
        check_unlocked(req, server_id, row["locked_by"])  # Nova guards metadata writes too
        if row["vm_state"] not in _WRITABLE or row["task_state"] is not None:
            raise ApiError(
                409,
                f"Cannot '{action}' instance {server_id} while it is in vm_state {row['vm_state']}",
            )
        metadata: dict[str, str] = change(dict(json.loads(row["metadata"])))
        _check(metadata)
        await uow.conn.execute(
            "UPDATE cmp_instances SET metadata = $2::jsonb, updated_at = $3 WHERE id = $1",
            server_id,
            json.dumps(metadata),
            uow.clock.now(),
        )
        await uow.emit(
            InstanceMetadataChanged(
                instance_id=server_id, project_id=row["project_id"], metadata=metadata
            )
        )
    return metadata


@router.get("/servers/{id}/metadata", errors=(404,))
async def list_metadata(req: ApiRequest[Any]) -> dict[str, Any]:
    """All metadata of a server."""
    return {"metadata": await _read(req)}


@router.post("/servers/{id}/metadata", body=MetadataBody, errors=(400, 403, 404, 409))
async def update_metadata(req: ApiRequest[MetadataBody]) -> dict[str, Any]:
    """Add or change the given items; answers with all of the server's metadata."""
    _check(req.body.metadata)
    new = req.body.metadata
    return {"metadata": await _write(req, lambda cur: cur | new, "update metadata")}


@router.put("/servers/{id}/metadata", body=MetadataBody, errors=(400, 403, 404, 409))
async def replace_metadata(req: ApiRequest[MetadataBody]) -> dict[str, Any]:
    """Replace all of the server's metadata."""
    _check(req.body.metadata)
    new = req.body.metadata
    return {"metadata": await _write(req, lambda cur: dict(new), "update metadata")}


@router.get("/servers/{id}/metadata/{key}", errors=(404,))
async def show_metadata_item(req: ApiRequest[Any]) -> dict[str, Any]:
    """One metadata item."""
    key = req.params["key"]
    metadata = await _read(req)
    if key not in metadata:
        raise ApiError(404, "Metadata item was not found")
    return {"meta": {key: metadata[key]}}


@router.put("/servers/{id}/metadata/{key}", body=MetaBody, errors=(400, 403, 404, 409))
async def set_metadata_item(req: ApiRequest[MetaBody]) -> dict[str, Any]:
    """Set one item; the body names exactly the key of the URL."""
    key, meta = req.params["key"], req.body.meta
    if len(meta) != 1:
        raise ApiError(400, "Request body contains too many items")
    if key not in meta:
        raise ApiError(400, "Request body and URI mismatch")
    _check(meta)
    await _write(req, lambda cur: cur | meta, "update metadata")
    return {"meta": meta}


@router.delete("/servers/{id}/metadata/{key}", status=204, errors=(404, 409))
async def delete_metadata_item(req: ApiRequest[Any]) -> None:
    """Delete one item (404 when the server has no such key)."""
    key = req.params["key"]

    def drop(cur: dict[str, str]) -> dict[str, str]:
        if key not in cur:
            raise ApiError(404, "Metadata item was not found")
        return {k: v for k, v in cur.items() if k != key}

    await _write(req, drop, "delete metadata")
