"""``/v2/images/{id}/tags/{tag}``: add or remove one tag."""

from __future__ import annotations

from typing import Any

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.image import attributes, repo
from cloud.image.api import router
from cloud.image.api.common import check_item_limit, enforce_on_image, find_image, service
from cloud.image.views import image_attributes
from schemas.image import ImageUpdated


async def _set_tags(req: ApiRequest[Any], add: bool) -> None:
    image_id, tag = req.params["image_id"], req.params["tag"]
    if add:
        attributes.check_value("tags", [tag])
    svc = service(req)
    async with svc.write() as uow:
        image = await find_image(
            req, uow.conn, image_id, for_update=True, missing=f"Image {image_id} not found."
        )
        enforce_on_image(req, "modify_image", image)
        tags = list(image["tags"])
        if add:
            if tag in tags:
                return
            tags.append(tag)
            check_item_limit("tags", len(tags), svc.settings.image_tag_quota, image_id)
        else:
            if tag not in tags:
                raise ApiError(404, "The resource could not be found.")
            tags.remove(tag)
        image = await repo.update(uow.conn, image_id, {"tags": tags, "updated_at": svc.clock.now()})
        await uow.emit(
            ImageUpdated(image_id=image_id, attributes=image_attributes(image), changed=["tags"])
        )


@router.put("/images/{image_id}/tags/{tag}", status=204)
async def add_image_tag(req: ApiRequest[Any]) -> None:
    """Tag an image (tagging twice is harmless)."""
    await _set_tags(req, add=True)


@router.delete("/images/{image_id}/tags/{tag}", status=204)
async def remove_image_tag(req: ApiRequest[Any]) -> None:
    """Remove a tag from an image (404 if it does not have it)."""
    await _set_tags(req, add=False)
