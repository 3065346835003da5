"""The image service object: what every image API handler shares.

One instance per gateway process: the settings, the store, the policy (Glance's defaults, see
:mod:`cloud.image.policies`), the quotas, and the hooks of the image data path (``delete_data``,
``start``/``stop``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
import yaml

from cloud.api.errors import ApiError
from cloud.api.policy import Policy, PolicyError
from cloud.config import Settings
from cloud.image import repo
from cloud.image.datastore import FileStore, InUse
from cloud.image.policies import DEFAULT_RULES
from cloud.store.conn import DbConnection
from cloud.store.db import Store
from cloud.store.writes import UnitOfWork
from schemas.image import ImageImported, ImageUploadFailed

UNLIMITED = -1
IMPORT_METHODS = ("glance-direct",)  # what the image data path offers
log = structlog.get_logger("aiostack.image")


def load_policy(path: Path | None) -> Policy:
    """Glance's defaults, overridden by the image rules of the shared policy file (if any).

    The file also holds other services' rules; only the names this service defines are read, so
    ``identity:*`` rules (and their helper rules) never reach the image policy.
    """
    if path is None:
        return Policy(DEFAULT_RULES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy file {path} must map rule names to check strings")
    return Policy(DEFAULT_RULES, {k: v for k, v in data.items() if k in DEFAULT_RULES})


def over_limit(project_id: str, resource: str, limit: int, usage: int, delta: int) -> ApiError:
    """413 in Glance's words for a project over one of its limits."""
    return ApiError(
        413,
        "The request returned a 413 Request Entity Too Large. This generally means that rate "
        "limiting or a quota threshold was breached.\n\nThe response body:\n"
        f"Project {project_id} is over a limit for [Resource {resource} is over limit of {limit} "
        f"due to current usage {usage} and delta {delta}]",
    )


class ImageService:
    """Everything the image API handlers share: the database, the policy, the settings."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.clock = store.clock
        self.policy = load_policy(settings.policy_file)
        # Import methods the data path offers (``OpenStack-image-import-methods`` on create).
        self.import_methods: tuple[str, ...] = ()

    async def start(self) -> None:
        """Called once before the gateway serves (e.g. to clean up interrupted uploads)."""
        await self.start_data()

    async def stop(self) -> None:
        """Called once after the gateway stopped serving."""
        await self.stop_data()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[UnitOfWork]:
        """One image transaction: rows on ``uow.conn`` plus the events it emits."""
        async with self.store.unit(source="image") as uow:
            yield uow

    async def delete_data(self, image: Mapping[str, Any]) -> None:
        """Remove a deleted image's data (stored and staged); called after the delete committed.

        ``image`` is the row as it was before the delete (``location``, ``staged``, ...).
        """
        await self.remove_data(image)

    # -- quotas ------------------------------------------------------------------------------

    async def check_quota(
        self,
        conn: DbConnection,
        project_id: str | None,
        extra_bytes: int = 0,
        *,
        extra_images: int = 0,
        exclude_image: str | None = None,
    ) -> None:
        """413 if ``project_id`` would own more than its quota with ``extra_images`` more images
        and ``extra_bytes`` more bytes of image data (``exclude_image``: an image whose data is
        being replaced, left out of the usage). Within a transaction, concurrent checks of one
        project wait for each other until commit, so two creates cannot both take the last slot.
        """
        count_limit = self.settings.image_quota_count
        bytes_limit = self.settings.image_quota_bytes
        if project_id is None or (count_limit == UNLIMITED and bytes_limit == UNLIMITED):
            return
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"img-quota:{project_id}"
        )
        if count_limit != UNLIMITED:
            count = await repo.image_count(conn, project_id)
            if count + extra_images > count_limit:
                raise over_limit(project_id, "image_count_total", count_limit, count, extra_images)
        if bytes_limit != UNLIMITED:
            used = await repo.used_bytes(conn, project_id, exclude=exclude_image)
            if used + extra_bytes > bytes_limit:
                raise over_limit(project_id, "image_size_total", bytes_limit, used, extra_bytes)

    async def remaining_bytes(
        self, conn: DbConnection, project_id: str | None, *, exclude_image: str | None = None
    ) -> int | None:
        """Bytes of image data ``project_id`` may still store; None when unlimited."""
        limit = self.settings.image_quota_bytes
        if project_id is None or limit == UNLIMITED:
            return None
        return max(0, limit - await repo.used_bytes(conn, project_id, exclude=exclude_image))

    # -- image data ----------------------------------------------------------------------------
    # This block belongs to the image data path (cloud/image/datastore.py, api/data.py,
    # api/imports.py): the data store, recovery on start, background imports, data removal.

    @functools.cached_property
    def data(self) -> FileStore:
        """Where image data lives: ``state_dir/images``."""
        return FileStore(self.settings.state_dir.resolve() / "images")

    @functools.cached_property
    def _imports(self) -> set[asyncio.Task[None]]:
        return set()

    async def start_data(self) -> None:
        """Recover from a stop at any instant: uploads and stagings that were cut off go back to
        ``queued``, files no image needs are removed, and accepted imports resume."""
        self.import_methods = IMPORT_METHODS
        now = self.clock.now()
        busy = sorted(await self.data.receiving())  # another live gateway sharing state_dir
        async with self.write() as uow:
            cut = await uow.conn.fetch(
                """UPDATE img_images SET status = 'queued', size = NULL, virtual_size = NULL,
                          upload_attempt = upload_attempt + 1, updated_at = $1
                   WHERE deleted_at IS NULL AND id <> ALL($2::text[])
                     AND (status = 'saving' OR (status = 'uploading' AND staged IS NULL))
                   RETURNING id""",
                now,
                busy,
            )
            for row in cut:
                reason = "The upload was interrupted: the image service stopped."
                await uow.emit(ImageUploadFailed(image_id=row["id"], reason=reason))
            rows = await uow.conn.fetch(
                """SELECT id, status, location, staged FROM img_images
                   WHERE deleted_at IS NULL
                     AND status IN ('active', 'deactivated', 'uploading', 'importing')"""
            )
        keep = {r["location"] for r in rows if r["status"] in ("active", "deactivated")}
        keep |= {r["staged"] for r in rows if r["status"] in ("uploading", "importing")}
        removed = await self.data.cleanup({k for k in keep if k})
        log.info("image.data.recovered", interrupted=len(cut), removed=len(removed))
        for row in rows:
            if row["status"] == "importing":
                self.spawn_import(row["id"])

    async def stop_data(self) -> None:
        """Let running imports finish for a while; the rest resume on the next start."""
        if self._imports:
            await asyncio.wait(list(self._imports), timeout=self.settings.shutdown_grace_s)
        for task in list(self._imports):
            task.cancel()
        await asyncio.gather(*self._imports, return_exceptions=True)
        if "data" in self.__dict__:
            self.data.close()

    async def remove_data(self, image: Mapping[str, Any]) -> None:
        """Remove an image's stored and staged data (missing files are fine)."""
        for location in (image.get("location"), image.get("staged")):
            if location:
                try:
                    await self.data.delete(location)
                except (OSError, ValueError):
                    # Left for the cleanup on the next start, which removes unreferenced data.
                    log.warning("image.data.delete_failed", image_id=image.get("id"), exc_info=True)

    def spawn_import(self, image_id: str) -> None:
        """Run the import of an image (status ``importing``) in the background."""
        task = asyncio.create_task(self._import(image_id), name=f"image-import-{image_id}")
        self._imports.add(task)
        task.add_done_callback(self._imports.discard)

    async def _import(self, image_id: str) -> None:
        """glance-direct: hash the staged data, move it into the store, make the image active.

        The ``importing`` status is the durable record of the accepted request: a stop before the
        end leaves it, and the next start runs the import again. A failure sends the image back
        to ``queued`` (as Glance does), its staged data removed.
        """
        async with self.store.pool.acquire() as conn:
            image = await repo.get(conn, image_id)
        if image is None or image["status"] != "importing" or not image["staged"]:
            return
        attempt = image["upload_attempt"]
        try:
            stored = await self.data.promote(image_id, image["staged"])
        except InUse:  # a second gateway sharing state_dir runs this import
            return
        except (OSError, ValueError) as exc:
            log.warning("image.import.failed", image_id=image_id, error=str(exc))
            async with self.write() as uow:
                failed = await uow.conn.fetchval(
                    """UPDATE img_images SET status = 'queued', staged = NULL, size = NULL,
                              updated_at = $3
                       WHERE id = $1 AND upload_attempt = $2 AND status = 'importing'
                       RETURNING id""",
                    image_id,
                    attempt,
                    self.clock.now(),
                )
                if failed is not None:
                    reason = f"The import of the staged data failed: {exc}"
                    await uow.emit(ImageUploadFailed(image_id=image_id, reason=reason))
            await self.remove_data({"id": image_id, "staged": image["staged"]})
            return
        async with self.write() as uow:
            done = await uow.conn.fetchval(
                """UPDATE img_images SET status = 'active', staged = NULL, location = $3,
                          size = $4, checksum = $5, os_hash_algo = 'sha512', os_hash_value = $6,
                          updated_at = $7
                   WHERE id = $1 AND upload_attempt = $2 AND status = 'importing'
                   RETURNING id""",
                image_id,
                attempt,
                stored.location,
                stored.size,
                stored.md5,
                stored.sha512,
                self.clock.now(),
            )
            if done is not None:
                assert stored.md5 is not None and stored.sha512 is not None
                await uow.emit(
                    ImageImported(
                        image_id=image_id,
                        method="glance-direct",
                        size=stored.size,
                        checksum=stored.md5,
                        os_hash_value=stored.sha512,
                    )
                )
        if done is None:  # deleted (or reset) meanwhile: the data is nobody's
            await self.remove_data({"id": image_id, "location": stored.location})
        else:
            log.info("image.imported", image_id=image_id, size=stored.size)
