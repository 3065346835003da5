"""``/v2/images``: create, list, show and change image records (metadata; data is elsewhere)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import RootModel

from cloud.api.errors import ApiError
from cloud.api.listing import Where, next_url, parse_limit
from cloud.api.router import ApiRequest, QueryParam
from cloud.image import attributes, filters, patch, repo
from cloud.image.api import router
from cloud.image.api.common import (
    allowed,
    check_item_limit,
    check_visibility_change,
    enforce,
    enforce_on_image,
    find_image,
    forbidden,
    image_target,
    is_admin,
    service,
    visible,
)
from cloud.image.views import image_attributes, image_view
from schemas.image import ImageCreated, ImageUpdated

DEFAULT_LIMIT, MAX_LIMIT = 25, 1000

LIST_QUERY = (
    QueryParam("limit", {"type": "integer", "minimum": 0}, "Page size (default 25, at most 1000)."),
    QueryParam("marker", description="Start after this image (its id)."),
    QueryParam("name", description="Exact name, or in:a,b."),
    QueryParam("id", description="Exact id, or in:a,b."),
    QueryParam("status", description="Exact status, or in:a,b."),
    QueryParam("visibility", description="public, private, shared, community or all."),
    QueryParam("member_status", description="pending, accepted (default), rejected or all."),
    QueryParam("owner", description="Owning project id."),
    QueryParam("container_format"),
    QueryParam("disk_format"),
    QueryParam("size_min", {"type": "integer"}),
    QueryParam("size_max", {"type": "integer"}),
    QueryParam("tag", description="Images with this tag (repeatable: all of them)."),
    QueryParam("protected", {"type": "boolean"}),
    QueryParam("os_hidden", {"type": "boolean"}, "Hidden images only (default: not hidden)."),
    QueryParam("created_at", description="gt:, gte:, lt:, lte:, neq: or eq: an ISO 8601 time."),
    QueryParam("updated_at", description="gt:, gte:, lt:, lte:, neq: or eq: an ISO 8601 time."),
    QueryParam("sort", description="key:dir,... (name, status, size, created_at, ...)."),
    QueryParam("sort_key"),
    QueryParam("sort_dir"),
)


class ImageCreate(RootModel[dict[str, Any]]):
    """An image's core attributes (``name``, ``disk_format``, ...) and extra string properties."""


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=json.dumps)


@router.post("/images", body=ImageCreate, status=201, errors=(409,))
async def create_image(req: ApiRequest[ImageCreate]) -> web.Response:
    """Create an image record (status ``queued``); its data is uploaded separately."""
    core, extra, tags = attributes.check_create(req.body.root)
    svc = service(req)
    project = req.auth.project_id
    owner = core.get("owner", project)
    proposed = {
        "project_id": owner,
        "owner": owner,
        "visibility": core.get("visibility", "private"),
    }
    if not allowed(req, "add_image", proposed):
        if owner != project:
            raise ApiError(403, f"You are not permitted to create images owned by '{owner}'")
        raise forbidden("add_image")
    check_visibility_change(req, proposed, proposed["visibility"])
    check_item_limit("properties", len(extra), svc.settings.image_property_quota)
    check_item_limit("tags", len(tags), svc.settings.image_tag_quota)
    now = svc.clock.now()
    values = {
        "id": core.get("id") or str(uuid.uuid4()),
        "name": core.get("name"),
        "owner": owner,
        "status": "queued",
        "visibility": core.get("visibility", "shared"),
        "protected": core.get("protected", False),
        "os_hidden": core.get("os_hidden", False),
        "container_format": core.get("container_format"),
        "disk_format": core.get("disk_format"),
        "min_disk": core.get("min_disk", 0),
        "min_ram": core.get("min_ram", 0),
        "tags": tags,
        "properties": extra,
        "created_at": now,
        "updated_at": now,
    }
    async with svc.write() as uow:
        await svc.check_quota(uow.conn, owner, extra_images=1)
        image = await repo.insert(uow.conn, values)
        if image is None:
            raise ApiError(409, f"Image ID {values['id']} already exists!")
        await uow.emit(ImageCreated(image_id=image["id"], attributes=image_attributes(image)))
    headers = {"Location": req.url(f"/images/{image['id']}")}
    if svc.import_methods:
        headers["OpenStack-image-import-methods"] = ",".join(svc.import_methods)
    return _json(image_view(image), 201, headers)


@router.get("/images", query=LIST_QUERY)
async def list_images(req: ApiRequest[Any]) -> dict[str, Any]:
    """Images the caller may see, filtered, sorted and paginated (``limit``/``marker``)."""
    enforce(req, "get_images", {"project_id": req.auth.project_id})
    query = filters.parse_query(req.query)
    limit = parse_limit(req.query, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    where = Where()
    filters.visibility_sql(query, where, project_id=req.auth.project_id, is_admin=is_admin(req))
    filters.filter_sql(query, where)
    async with service(req).store.pool.acquire() as conn:
        marker_id = req.query.get("marker")
        if marker_id is not None:
            marker = await repo.get(conn, marker_id)
            if marker is None or not await visible(req, conn, marker):
                raise ApiError(400, f"No image found with ID {marker_id}")
            filters.keyset_sql(query.sort, marker, where)
        rows = await repo.list_page(conn, where, filters.order_sql(query.sort), limit + 1)
    page = rows[:limit]
    images = [r for r in page if allowed(req, "get_image", image_target(req, r))]
    rest = [(k, v) for k, v in req.query.items() if k != "marker"]
    body: dict[str, Any] = {
        "images": [image_view(r) for r in images],
        "first": "/v2/images" + (f"?{urlencode(rest)}" if rest else ""),
        "schema": "/v2/schemas/images",
    }
    if len(rows) > limit and page:
        body["next"] = next_url("/v2/images", req.query, page[-1]["id"])
    return body


@router.get("/images/{image_id}")
async def show_image(req: ApiRequest[Any]) -> dict[str, Any]:
    """One image."""
    async with service(req).store.pool.acquire() as conn:
        image = await find_image(req, conn, req.params["image_id"])
    return image_view(image)


@router.patch(
    "/images/{image_id}",
    content_types=(patch.PATCH_V2_1, patch.PATCH_V2_0),
    errors=(409,),
)
async def update_image(req: ApiRequest[Any]) -> dict[str, Any]:
    """Change an image with a JSON patch (``application/openstack-images-v2.1-json-patch``)."""
    changes = patch.parse(req.raw.content_type, await req.raw.read())
    svc = service(req)
    async with svc.write() as uow:
        image = await find_image(req, uow.conn, req.params["image_id"], for_update=True)
        if not changes:
            return image_view(image)
        _authorize_changes(req, image, changes)
        before = patch.ImageDoc(
            {k: image[k] for k in attributes.WRITABLE if k != "tags"},
            dict(image["properties"]),
            list(image["tags"]),
        )
        after = patch.apply(before, changes)
        check_item_limit("properties", len(after.properties), svc.settings.image_property_quota)
        check_item_limit("tags", len(after.tags), svc.settings.image_tag_quota)
        changed = patch.changed_attributes(before, after)
        if not changed:
            return image_view(image)
        values: dict[str, Any] = {k: after.core[k] for k in changed if k in after.core}
        if "tags" in changed:
            values["tags"] = after.tags
        if set(changed) - set(after.core) - {"tags"}:
            values["properties"] = after.properties
        values["updated_at"] = svc.clock.now()
        image = await repo.update(uow.conn, image["id"], values)
        await uow.emit(
            ImageUpdated(image_id=image["id"], attributes=image_attributes(image), changed=changed)
        )
    return image_view(image)


def _authorize_changes(
    req: ApiRequest[Any], image: repo.Image, changes: list[patch.Change]
) -> None:
    """Each change as Glance checks it: owner is admin's, visibility has its own rules, the
    formats are fixed once data arrived, and everything needs ``modify_image``."""
    for change in changes:
        if change.path == "owner" and change.op != "remove" and not is_admin(req):
            raise ApiError(403, "Owner can't be updated by non admin.")
        if change.path == "visibility" and change.op != "remove":
            check_visibility_change(req, image_target(req, image), change.value)
        enforce_on_image(req, "modify_image", image)
        if (
            change.path in ("container_format", "disk_format")
            and change.op != "remove"
            and image["status"] not in ("queued", "importing")
        ):
            raise ApiError(403, f"Attribute {change.path} can be only replaced for a queued image.")


# Deleting and (de)activating images live beside; importing registers their operations.
from cloud.image.api import image_actions  # noqa: E402, F401
