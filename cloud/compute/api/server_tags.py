"""``/servers/{id}/tags[/{tag}]``: a server's tags (Nova 2.26+; a 404 below, as for any route
a microversion does not have yet).

A tag is 1-60 characters without ``/`` or ``,`` (Nova's ``parameter_types.tag``); a server has
at most :data:`MAX_TAGS`. Writes need the server in a state Nova lets tags change in (no task
check, no lock check, as in Nova) and emit ``compute.instance.tags_changed`` in the same
transaction as the row.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE, router
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import locked_server, not_found, scope_of
from cloud.conductor import states
from schemas.compute_servers import InstanceTagsChanged

MIN_VERSION = (2, 26)
MAX_TAGS = 50
MAX_TAG_LENGTH = 60
# Nova's server_tags._check_instance_in_valid_state.
_WRITABLE = (
    states.ACTIVE,
    states.PAUSED,
    states.RESCUED,
    states.SHELVED,
    states.SHELVED_OFFLOADED,
    states.STOPPED,
    states.SUSPENDED,
)


class TagsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(max_length=MAX_TAGS)


def check_tag(tag: str) -> None:
    """400 unless ``tag`` is a tag Nova accepts."""
    if not 1 <= len(tag) <= MAX_TAG_LENGTH or "/" in tag or "," in tag:
        raise ApiError(
            400,
            f"Tag '{tag}' is invalid. It must be a non empty string without characters '/' and "
            f"',' and at most {MAX_TAG_LENGTH} characters long.",
        )


def _since(req: ApiRequest[Any]) -> None:
    if version(req) < MIN_VERSION:
        raise ApiError(404, "The resource could not be found.")


async def _tags(req: ApiRequest[Any]) -> list[str]:
    _since(req)
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.pool.acquire() as conn:
        tags = await conn.fetchval(
            """SELECT tags FROM cmp_instances
               WHERE id = $1 AND deleted_at IS NULL AND ($2::text IS NULL OR project_id = $2)""",
            server_id,
            scope_of(req),
        )
    if tags is None:
        raise not_found(server_id)
    return list(tags)


async def _write(req: ApiRequest[Any], action: str, change: Any) -> tuple[list[str], list[str]]:
    """Apply ``change(current) -> new`` under the row lock; (before, after)."""
    _since(req)
    server_id = req.params["id"]
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await locked_server(uow.conn, server_id, scope_of(req), "project_id, vm_state, tags")
        if row["vm_state"] not in _WRITABLE:
            raise ApiError(
                409,
                f"Cannot '{action}' instance {server_id} while it is in vm_state {row['vm_state']}",
            )
        before = list(row["tags"])
        after: list[str] = change(before)
        if after != before:
            await uow.conn.execute(
                "UPDATE cmp_instances SET tags = $2::text[], updated_at = $3 WHERE id = $1",
                server_id,
                after,
                uow.clock.now(),
            )
            await uow.emit(
                InstanceTagsChanged(instance_id=server_id, project_id=row["project_id"], tags=after)
            )
    return before, after


@router.get("/servers/{id}/tags", errors=(404,))
async def list_tags(req: ApiRequest[Any]) -> dict[str, Any]:
    """All tags of a server."""
    return {"tags": await _tags(req)}


@router.put("/servers/{id}/tags", body=TagsBody, errors=(400, 404, 409))
async def replace_tags(req: ApiRequest[TagsBody]) -> dict[str, Any]:
    """Replace all of a server's tags."""
    _since(req)
    new: list[str] = []
    for tag in req.body.tags:
        check_tag(tag)
        if tag not in new:
            new.append(tag)
    _, after = await _write(req, "update tags", lambda _: new)
    return {"tags": after}


@router.delete("/servers/{id}/tags", status=204, errors=(404, 409))
async def delete_tags(req: ApiRequest[Any]) -> None:
    """Remove every tag of a server."""
    await _write(req, "delete tags", lambda _: [])


@router.get("/servers/{id}/tags/{tag}", status=204, errors=(404,))
async def check_server_tag(req: ApiRequest[Any]) -> None:
    """204 when the server has the tag, else 404."""
    tag = req.params["tag"]
    if tag not in await _tags(req):
        raise ApiError(404, f"Tag {tag} could not be found.")


@router.put("/servers/{id}/tags/{tag}", status=201, errors=(400, 404, 409))
async def add_tag(req: ApiRequest[Any]) -> web.Response:
    """Add one tag: 201 when added, 204 when the server had it already."""
    _since(req)
    tag = req.params["tag"]
    check_tag(tag)

    def add(current: list[str]) -> list[str]:
        # Nova counts before it looks: a full server refuses even a tag it has.
        if len(current) >= MAX_TAGS:
            raise ApiError(400, f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        return current if tag in current else [*current, tag]

    before, _ = await _write(req, "update tag", add)
    if tag in before:
        return web.Response(status=204)
    location = req.url(f"/servers/{req.params['id']}/tags/{tag}")
    return web.Response(status=201, headers={"Location": location})


@router.delete("/servers/{id}/tags/{tag}", status=204, errors=(404, 409))
async def delete_tag(req: ApiRequest[Any]) -> None:
    """Remove one tag (404 when the server does not have it)."""
    tag = req.params["tag"]

    def drop(current: list[str]) -> list[str]:
        if tag not in current:
            raise ApiError(404, f"Tag {tag} could not be found.")
        return [t for t in current if t != tag]

    await _write(req, "delete tag", drop)
