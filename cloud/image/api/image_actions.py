"""Deleting an image and ``/v2/images/{id}/actions/{deactivate,reactivate}``."""

from __future__ import annotations

from typing import Any

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.image import repo
from cloud.image.api import router
from cloud.image.api.common import enforce_on_image, find_image, service
from cloud.image.views import image_attributes
from schemas.image import ImageDeactivated, ImageDeleted, ImageReactivated


@router.delete("/images/{image_id}", status=204)
async def delete_image(req: ApiRequest[Any]) -> None:
    """Delete an image (refused while protected); its data is removed once the delete commits."""
    image_id = req.params["image_id"]
    svc = service(req)
    async with svc.write() as uow:
        image = await find_image(
            req,
            uow.conn,
            image_id,
            for_update=True,
            missing=f"Failed to find image {image_id} to delete",
        )
        enforce_on_image(req, "delete_image", image)
        if image["protected"]:
            raise ApiError(403, f"Image {image_id} is protected and cannot be deleted.")
        before = await repo.mark_deleted(uow.conn, image_id, svc.clock.now())
        assert before is not None  # locked above
        gone = image_attributes(before) | {"status": "deleted"}
        await uow.emit(ImageDeleted(image_id=image_id, attributes=gone))
    await svc.delete_data(before)


async def _transition(req: ApiRequest[Any], rule: str, source: str, target: str) -> None:
    """``source`` -> ``target`` (already there: nothing to do); any other status: 403."""
    svc = service(req)
    async with svc.write() as uow:
        image = await find_image(req, uow.conn, req.params["image_id"], for_update=True)
        enforce_on_image(req, rule, image)
        if image["status"] == target:
            return
        if image["status"] != source:
            verb = "deactivate" if rule == "deactivate" else "reactivate"
            raise ApiError(403, f"Not allowed to {verb} image in status '{image['status']}'")
        image = await repo.update(
            uow.conn, image["id"], {"status": target, "updated_at": svc.clock.now()}
        )
        event: type[ImageDeactivated | ImageReactivated] = (
            ImageDeactivated if target == "deactivated" else ImageReactivated
        )
        await uow.emit(event(image_id=image["id"], attributes=image_attributes(image)))


@router.post("/images/{image_id}/actions/deactivate", status=204)
async def deactivate_image(req: ApiRequest[Any]) -> None:
    """Deactivate an active image: its data can no longer be downloaded (except by admins)."""
    await _transition(req, "deactivate", "active", "deactivated")


@router.post("/images/{image_id}/actions/reactivate", status=204)
async def reactivate_image(req: ApiRequest[Any]) -> None:
    """Reactivate a deactivated image."""
    await _transition(req, "reactivate", "deactivated", "active")
