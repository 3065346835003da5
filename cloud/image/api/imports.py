"""Interoperable image import (glance-direct) and the discovery calls of ``/v2/info``.

``PUT /v2/images/{id}/stage`` streams data into the staging area (``queued`` -> ``uploading``; the
image stays ``uploading`` once staged, with its size). ``POST /v2/images/{id}/import`` with
``{"method": {"name": "glance-direct"}}`` moves it to ``importing`` and answers 202; the import
itself (hash the staged data, move it into the store, ``active``) runs in the background. The
``importing`` status, committed before the 202, is the durable record of the request: a gateway
stopped before the end runs the import again when it starts (``ImageService.start_data``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.image.api import router
from cloud.image.api.common import enforce_on_image, find_image, service
from cloud.image.api.data import (
    OCTET_STREAM,
    Upload,
    begin,
    check_octet_stream,
    declared_size,
    receive,
)
from cloud.image.datastore import StoredData
from cloud.image.service import IMPORT_METHODS
from cloud.store.writes import UnitOfWork
from schemas.image import ImageStaged


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImportMethod(_Strict):
    name: StrictStr
    uri: StrictStr | None = None
    glance_image_id: StrictStr | None = None
    glance_region: StrictStr | None = None
    glance_service_interface: StrictStr | None = None


class ImportRequest(_Strict):
    method: ImportMethod
    stores: list[StrictStr] | None = None
    all_stores: StrictBool = False
    all_stores_must_succeed: StrictBool = True


async def _finish_stage(uow: UnitOfWork, upload: Upload, stored: StoredData) -> bool:
    image_id = upload.image["id"]
    row = await uow.conn.fetchval(
        """UPDATE img_images SET staged = $3, size = $4, updated_at = $5
           WHERE id = $1 AND upload_attempt = $2 AND status = 'uploading' AND deleted_at IS NULL
           RETURNING id""",
        image_id,
        upload.attempt,
        stored.location,
        stored.size,
        uow.clock.now(),
    )
    if row is None:
        return False
    await uow.emit(ImageStaged(image_id=image_id, size=stored.size))
    return True


@router.put(
    "/images/{image_id}/stage",
    status=204,
    content_types=(OCTET_STREAM,),
    errors=(400, 403, 404, 409, 410, 413, 415, 503),
)
async def stage_image_data(req: ApiRequest[Any]) -> None:
    """Stage an image's data for a glance-direct import (``queued`` -> ``uploading``)."""
    check_octet_stream(req)
    upload = await begin(req, rule="modify_image", status="uploading", declared=declared_size(req))
    data = service(req).data

    async def stage(image_id: str, chunks: AsyncIterator[bytes], limit: int | None) -> StoredData:
        return await data.stage(image_id, chunks, limit=limit)

    await receive(req, upload, stage, _finish_stage)


@router.post(
    "/images/{image_id}/import", body=ImportRequest, status=202, errors=(400, 403, 404, 409)
)
async def import_image(req: ApiRequest[ImportRequest]) -> None:
    """Import staged data into the store (glance-direct); runs in the background.

    Other methods (web-download, copy-image, glance-download) are not offered: 400, as Glance
    answers for a method its operator did not enable.
    """
    method = req.body.method.name
    if method not in IMPORT_METHODS:
        raise ApiError(400, f"Unknown import method name '{method}'.")
    if not req.body.all_stores_must_succeed:
        raise ApiError(400, "All_stores_must_succeed can only be set with enabled_backends None")
    svc = service(req)
    async with svc.write() as uow:
        image = await find_image(req, uow.conn, req.params["image_id"], for_update=True)
        status = image["status"]
        if status == "active":
            raise ApiError(409, "Image with status active cannot be target for import")
        if status != "uploading" or not image["staged"]:
            raise ApiError(409, f"Image needs to be staged before '{method}' method can be used")
        for key in ("container_format", "disk_format"):
            if not image[key]:
                raise ApiError(409, f"'{key}' needs to be set before import")
        enforce_on_image(req, "modify_image", image)
        await svc.check_quota(uow.conn, image["owner"])
        await uow.conn.execute(
            """UPDATE img_images SET status = 'importing', updated_at = $2 WHERE id = $1""",
            image["id"],
            svc.clock.now(),
        )
    svc.spawn_import(image["id"])


@router.get("/info/import")
async def import_info(req: ApiRequest[Any]) -> dict[str, Any]:
    """The import methods this cloud offers."""
    return {
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": list(IMPORT_METHODS),
        }
    }


@router.get("/info/stores", errors=(404,))
async def store_info(req: ApiRequest[Any]) -> dict[str, Any]:
    """Store discovery: one store and no multi-store API, so 404 as Glance says without it."""
    raise ApiError(404, "Multi backend is not supported at this site.")
