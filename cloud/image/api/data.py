"""``/v2/images/{id}/file``: upload and download image data, streamed, as Glance v2 does.

An upload moves the image ``queued`` -> ``saving`` -> ``active``. The first step is a conditional
update under the row lock, so of two concurrent uploads one gets 409; the data then streams to the
store (never whole in memory: the gateway's body limit does not apply to streams) with size, md5
and sha512 computed on the way, and the last step only wins if the upload's attempt is still the
image's current one (a delete in between bumps it: 410, the data removed). An upload cut short —
the client gone, over quota (413), a size unlike ``X-OpenStack-Image-Size`` (400) — sends the image
back to ``queued`` with nothing left on disk; a store failure kills it (``killed``, 503).

A download streams the stored file with ``Content-MD5`` (the hex md5, as Glance sends it and
openstacksdk checks it) and answers a single ``Range`` with 206, an unsatisfiable one with 416. An
image without data answers 204; a deactivated image is forbidden (403) to all but admins.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cloud.api.app import REQUEST_ID_HEADER
from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.image import repo
from cloud.image.api import router
from cloud.image.api.common import enforce_on_image, find_image, is_admin, service
from cloud.image.datastore import LimitExceeded, StoredData
from cloud.image.service import ImageService, over_limit
from cloud.store.writes import UnitOfWork
from schemas.image import ImageUploaded, ImageUploadFailed

log = structlog.get_logger("aiostack.image.data")

OCTET_STREAM = "application/octet-stream"
SIZE_HEADER = "X-OpenStack-Image-Size"


class ClientGone(Exception):
    """The request body broke off: the client disconnected or sent malformed chunks."""


class SizeMismatch(Exception):
    """The body is not as long as ``X-OpenStack-Image-Size`` said."""


@dataclass(frozen=True)
class Upload:
    """One attempt at receiving an image's data (``attempt``: the image's ``upload_attempt``)."""

    image: repo.Image
    attempt: int
    status: str  # the status while receiving: saving (upload) or uploading (stage)
    allowance: int | None  # bytes the owner may still store; None: unlimited


Store = Callable[[str, AsyncIterator[bytes], int | None], Awaitable[StoredData]]
Finish = Callable[[UnitOfWork, Upload, StoredData], Awaitable[bool]]


def check_octet_stream(req: ApiRequest[Any]) -> None:
    """415 unless the body is declared ``application/octet-stream`` (a missing type too)."""
    if "Content-Type" not in req.raw.headers or req.raw.content_type != OCTET_STREAM:
        given = req.raw.headers.get("Content-Type", "none")
        raise ApiError(415, f"Content-Type must be {OCTET_STREAM}, not {given}.")


def declared_size(req: ApiRequest[Any]) -> int | None:
    """``X-OpenStack-Image-Size``, else ``Content-Length`` (None: chunked, size unknown)."""
    text = req.raw.headers.get(SIZE_HEADER)
    if text is None:
        return req.raw.content_length
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size < 0:
        raise ApiError(400, "Invalid or missing image size in request headers.")
    return size


async def begin(req: ApiRequest[Any], *, rule: str, status: str, declared: int | None) -> Upload:
    """Check the caller, the image and the quota; move the image from ``queued`` to ``status``."""
    svc = service(req)
    async with svc.write() as uow:
        image = await find_image(req, uow.conn, req.params["image_id"], for_update=True)
        enforce_on_image(req, rule, image)
        if image["status"] != "queued":
            raise ApiError(
                409, f"Image status transition from {image['status']} to {status} is not allowed"
            )
        missing = [k for k in ("disk_format", "container_format") if not image[k]]
        if missing and status == "saving":
            noun = "Property" if len(missing) == 1 else "Properties"
            raise ApiError(400, f"{noun} {', '.join(missing)} must be set prior to saving data.")
        owner, image_id = image["owner"], image["id"]
        await svc.check_quota(uow.conn, owner, declared or 0, exclude_image=image_id)
        allowance = await svc.remaining_bytes(uow.conn, owner, exclude_image=image_id)
        attempt = await uow.conn.fetchval(
            """UPDATE img_images SET status = $2, upload_attempt = upload_attempt + 1,
                      updated_at = $3
               WHERE id = $1 RETURNING upload_attempt""",
            image_id,
            status,
            svc.clock.now(),
        )
    return Upload(image, int(attempt), status, allowance)


async def receive(req: ApiRequest[Any], upload: Upload, store: Store, finish: Finish) -> None:
    """Stream the body into ``store``; ``finish`` records the result (False: the upload lost).

    Every way out but success leaves the image as a new upload may find it and no data behind.
    """
    svc, image_id = service(req), upload.image["id"]
    chunks = _body(req, declared_size(req))
    try:
        stored = await store(image_id, chunks, upload.allowance)
    except LimitExceeded as exc:
        await restore(svc, upload, "The upload exceeded the image storage quota.")
        limit = svc.settings.image_quota_bytes
        owner, used = upload.image["owner"], limit - exc.limit
        raise over_limit(owner, "image_size_total", limit, used, exc.received) from None
    except SizeMismatch as exc:
        await restore(svc, upload, str(exc))
        raise ApiError(400, str(exc)) from None
    except ClientGone as exc:
        await restore(svc, upload, f"The client went away during the upload: {exc}")
        raise ApiError(400, f"The upload was interrupted: {exc}") from None
    except OSError as exc:
        raise await _store_failed(svc, upload, exc) from None
    except BaseException:  # cancelled (shutdown) or a bug: never leave the image saving
        await asyncio.shield(restore(svc, upload, "The upload failed."))
        raise
    try:
        async with svc.write() as uow:
            owner = upload.image["owner"]
            # Re-checked with the real size: uploads of one project running side by side
            # cannot together go past its quota.
            await svc.check_quota(uow.conn, owner, stored.size, exclude_image=image_id)
            won = await finish(uow, upload, stored)
    except BaseException:
        await asyncio.shield(_discard(svc, upload, stored, "The upload could not be recorded."))
        raise
    if not won:
        await svc.remove_data({"id": image_id, "location": stored.location})
        async with svc.store.pool.acquire() as conn:
            gone = await repo.get(conn, image_id) is None
        if gone:
            raise ApiError(
                410,
                f"Image {image_id} could not be found after upload. The image may have been "
                "deleted during the upload, cleaning up the chunks uploaded.",
            )
        raise ApiError(409, f"The upload to image {image_id} was superseded by another one.")


async def restore(
    svc: ImageService, upload: Upload, reason: str, *, status: str = "queued"
) -> None:
    """Back to ``status`` (default ``queued``) if the image is still in this upload's hands."""
    async with svc.write() as uow:
        row = await uow.conn.fetchval(
            """UPDATE img_images SET status = $4, size = NULL, virtual_size = NULL,
                      updated_at = $5
               WHERE id = $1 AND upload_attempt = $2 AND status = $3 AND deleted_at IS NULL
               RETURNING id""",
            upload.image["id"],
            upload.attempt,
            upload.status,
            status,
            svc.clock.now(),
        )
        if row is not None:
            await uow.emit(ImageUploadFailed(image_id=upload.image["id"], reason=reason))
    log.info("image.upload.failed", image_id=upload.image["id"], status=status, reason=reason)


async def _discard(svc: ImageService, upload: Upload, stored: StoredData, reason: str) -> None:
    await svc.remove_data({"id": upload.image["id"], "location": stored.location})
    await restore(svc, upload, reason)


async def _store_failed(svc: ImageService, upload: Upload, exc: OSError) -> ApiError:
    """Full storage: 413, retry later. Any other store failure kills an upload (a stage is only
    sent back to ``queued``: Glance never kills a staging image) and answers 503."""
    log.error("image.store.failed", image_id=upload.image["id"], error=str(exc))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        await restore(svc, upload, f"The image storage media is full: {exc}")
        return ApiError(413, f"Image storage media is full: {exc.strerror}")
    killed = "killed" if upload.status == "saving" else "queued"
    await restore(svc, upload, f"The image store failed: {exc}", status=killed)
    return ApiError(503, f"The image store failed to keep the data: {exc.strerror}")


async def _body(req: ApiRequest[Any], declared: int | None) -> AsyncIterator[bytes]:
    """The request body as it arrives; client failures become :class:`ClientGone`."""
    stream, received = req.raw.content, 0
    while True:
        try:
            chunk = await stream.readany()
        except (OSError, HttpProcessingError, asyncio.IncompleteReadError) as exc:
            raise ClientGone(str(exc) or type(exc).__name__) from exc
        if not chunk:
            break
        received += len(chunk)
        if declared is not None and received > declared:
            raise SizeMismatch(f"The data is longer than the declared {declared} bytes.")
        yield chunk
    if declared is not None and received != declared:
        raise SizeMismatch(f"The data is {received} bytes, not the declared {declared} bytes.")


async def _finish_upload(uow: UnitOfWork, upload: Upload, stored: StoredData) -> bool:
    assert stored.md5 is not None and stored.sha512 is not None
    image_id = upload.image["id"]
    row = await uow.conn.fetchval(
        """UPDATE img_images SET status = 'active', location = $3, size = $4, checksum = $5,
                  os_hash_algo = 'sha512', os_hash_value = $6, updated_at = $7
           WHERE id = $1 AND upload_attempt = $2 AND status = 'saving' AND deleted_at IS NULL
           RETURNING id""",
        image_id,
        upload.attempt,
        stored.location,
        stored.size,
        stored.md5,
        stored.sha512,
        uow.clock.now(),
    )
    if row is None:
        return False
    await uow.emit(
        ImageUploaded(
            image_id=image_id, size=stored.size, checksum=stored.md5, os_hash_value=stored.sha512
        )
    )
    return True


@router.put(
    "/images/{image_id}/file",
    status=204,
    content_types=(OCTET_STREAM,),
    errors=(400, 403, 404, 409, 410, 413, 415, 503),
)
async def upload_image_data(req: ApiRequest[Any]) -> None:
    """Upload an image's data (the image must be ``queued``; it becomes ``active``)."""
    check_octet_stream(req)
    upload = await begin(req, rule="upload_image", status="saving", declared=declared_size(req))
    data = service(req).data

    async def store(image_id: str, chunks: AsyncIterator[bytes], limit: int | None) -> StoredData:
        return await data.put(image_id, chunks, limit=limit)

    await receive(req, upload, store, _finish_upload)
    log.info("image.uploaded", image_id=upload.image["id"])


@router.get("/images/{image_id}/file", errors=(403, 404, 416))
async def download_image_data(req: ApiRequest[Any]) -> web.StreamResponse:
    """Download an image's data (all of it, or one ``Range``)."""
    svc = service(req)
    async with svc.store.pool.acquire() as conn:
        image = await find_image(req, conn, req.params["image_id"])
    if image["status"] == "deactivated" and not is_admin(req):
        raise ApiError(
            403, "The requested image has been deactivated. Image data download is forbidden."
        )
    enforce_on_image(req, "download_image", image)
    if image["status"] not in ("active", "deactivated") or not image["location"]:
        return web.Response(status=204)
    size = int(image["size"] or 0)
    wanted = parse_range(req.raw.headers.get("Range"), size)
    start, end = wanted or (0, size - 1)
    try:
        reader = await svc.data.open(image["location"], start, end - start + 1)
    except FileNotFoundError:
        log.error("image.data.missing", image_id=image["id"], location=image["location"])
        return web.Response(status=204)  # Glance: the store has no data for it
    response = web.StreamResponse(status=206 if wanted else 200)
    response.content_type = OCTET_STREAM
    response.content_length = end - start + 1
    response.headers[REQUEST_ID_HEADER] = req.request_id
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    elif image["checksum"]:
        response.headers["Content-MD5"] = image["checksum"]
    try:
        await response.prepare(req.raw)
        async for block in reader:
            await response.write(block)
        await response.write_eof()
    except ConnectionError as exc:  # the client went away: nothing to answer
        log.info("image.download.aborted", image_id=image["id"], error=str(exc))
    finally:
        await reader.aclose()
    return response


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (first, last) within ``size``; None without a header.

    As Glance: several ranges are a 400, anything unsatisfiable or malformed a 416.
    """
    if header is None:
        return None
    if "," in header:
        raise ApiError(
            400,
            "Requests with multiple ranges are not supported in Glance. You may make multiple "
            "single-range requests instead.",
        )
    unit, _, spec = header.strip().partition("=")
    first_text, dash, last_text = spec.strip().partition("-")
    try:
        if unit.strip().lower() != "bytes" or not dash:
            raise ValueError(header)
        if first_text == "":  # suffix: the last N bytes
            count = int(last_text)
            if count <= 0:
                raise ValueError(header)
            first, last = max(0, size - count), size - 1
        else:
            first = int(first_text)
            last = int(last_text) if last_text else size - 1
            if first < 0 or last < first:
                raise ValueError(header)
    except ValueError:
        raise _unsatisfiable("Invalid Range header.", size) from None
    if first >= size:
        raise _unsatisfiable(
            "Invalid start position in Range header. Start position MUST be in the inclusive "
            f"range [0, {size - 1}].",
            size,
        )
    return first, min(last, size - 1)


def _unsatisfiable(message: str, size: int) -> ApiError:
    return ApiError(416, message, headers={"Content-Range": f"bytes */{size}"})
