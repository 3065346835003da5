"""``/v3/projects/{id}/tags``: a project's tags as a list, and one tag at a time.

Tags follow the API-WG guideline Keystone uses: 1-255 characters without ``/`` or ``,``, at most
80 per project, no duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import Field

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.identity.api import router
from cloud.identity.api._resources_render import (
    Strict,
    Tag,
    load_for,
    path_id,
    render_project,
    unique_tags,
)
from cloud.identity.api.common import identity, not_found
from schemas.identity import ProjectUpdated

MAX_TAGS = 80
_TAG = re.compile(r"^[^,/]{1,255}$")


class TagsBody(Strict):
    tags: list[Tag] = Field(max_length=MAX_TAGS)


def _tags_reply(req: ApiRequest[Any], tags: list[str]) -> dict[str, Any]:
    return {"tags": tags, "links": {"self": str(req.raw.url)}}


async def _change(
    req: ApiRequest[Any], project_id: str, change: Callable[[list[str]], list[str]]
) -> list[str]:
    """Apply ``change`` to the project's tags, in one transaction that holds the row."""
    async with identity(req).write() as uow:
        tags = await uow.conn.fetchval(
            "SELECT tags FROM id_projects WHERE id = $1 FOR UPDATE", project_id
        )
        if tags is None:
            raise not_found("project", project_id)
        new = change(list(tags))
        if new == list(tags):
            return new
        row = await uow.conn.fetchrow(
            "UPDATE id_projects SET tags = $2 WHERE id = $1 RETURNING *", project_id, new
        )
        assert row is not None
        await uow.emit(ProjectUpdated(resource_id=project_id, attributes=render_project(row)))
    return new


def _tag_param(req: ApiRequest[Any]) -> str:
    tag = req.params["tag"]
    if not _TAG.match(tag) or "\x00" in tag:
        raise ApiError(400, f"Invalid project tag {tag!r}: 1-255 characters, no '/' or ','.")
    return tag


@router.get("/projects/{project_id}/tags", errors=(403, 404))
async def list_project_tags(req: ApiRequest[Any]) -> dict[str, Any]:
    """List a project's tags."""
    project_id = path_id(req, "project_id", "project")
    row = await load_for(req, "identity:list_project_tags", "project", project_id)
    return _tags_reply(req, list(row["tags"]))


@router.put("/projects/{project_id}/tags", body=TagsBody, errors=(400, 403, 404))
async def update_project_tags(req: ApiRequest[TagsBody]) -> dict[str, Any]:
    """Replace a project's tags."""
    project_id = path_id(req, "project_id", "project")
    await load_for(req, "identity:update_project_tags", "project", project_id)
    wanted = unique_tags(req.body.tags)
    return _tags_reply(req, await _change(req, project_id, lambda _old: wanted))


@router.delete("/projects/{project_id}/tags", status=204, errors=(403, 404))
async def delete_project_tags(req: ApiRequest[Any]) -> None:
    """Remove every tag of a project."""
    project_id = path_id(req, "project_id", "project")
    await load_for(req, "identity:delete_project_tags", "project", project_id)
    await _change(req, project_id, lambda _old: [])


@router.get("/projects/{project_id}/tags/{tag}", status=204, errors=(403, 404))
async def get_project_tag(req: ApiRequest[Any]) -> None:
    """Check that a project has a tag (204, else 404)."""
    project_id = path_id(req, "project_id", "project")
    row = await load_for(req, "identity:get_project_tag", "project", project_id)
    tag = req.params["tag"]
    if tag not in row["tags"]:
        raise ApiError(404, f"Could not find project tag: {tag}.")


@router.put("/projects/{project_id}/tags/{tag}", status=201, errors=(400, 403, 404))
async def create_project_tag(req: ApiRequest[Any]) -> web.Response:
    """Add a tag to a project."""
    project_id = path_id(req, "project_id", "project")
    await load_for(req, "identity:create_project_tag", "project", project_id)
    tag = _tag_param(req)

    def add(tags: list[str]) -> list[str]:
        if tag in tags:
            return tags
        if len(tags) >= MAX_TAGS:
            raise ApiError(400, f"A project has at most {MAX_TAGS} tags.")
        return [*tags, tag]

    await _change(req, project_id, add)
    return web.Response(status=201, headers={"Location": str(req.raw.url)})


@router.delete("/projects/{project_id}/tags/{tag}", status=204, errors=(403, 404))
async def delete_project_tag(req: ApiRequest[Any]) -> None:
    """Remove a tag from a project."""
    project_id = path_id(req, "project_id", "project")
    await load_for(req, "identity:delete_project_tag", "project", project_id)
    tag = req.params["tag"]

    def remove(tags: list[str]) -> list[str]:
        if tag not in tags:
            raise ApiError(404, f"Could not find project tag: {tag}.")
        return [t for t in tags if t != tag]

    await _change(req, project_id, remove)
