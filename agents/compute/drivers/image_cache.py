"""Where the libvirt driver gets images: an :class:`ImageSource` (the image service over HTTP, or
local files in tests) and an :class:`ImageCache` of base files on the host.

The agent never touches the database, so images come over HTTP from the image API, with the
agent's own credentials (``HttpImageSource`` over an :class:`ImageApiAuth`). The cache downloads
each image once, to a temporary name renamed into place when complete and verified (a crash
mid-download leaves no half image that looks whole), one download per image at a time however
many instances ask.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from agents.compute.driver import DriverError

# Glance's core attributes; everything else on an image record is a property.
_CORE = {
    "id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo", "os_hash_value",
    "owner", "size", "virtual_size", "min_ram", "min_disk", "created_at", "updated_at", "tags",
    "self", "file", "schema", "disk_format", "container_format", "locations", "direct_url",
    "os_hidden", "stores",
}  # fmt: skip
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
CHUNK = 1 << 20


class ImageUnavailable(DriverError):
    """The image cannot be had: unknown, not active, unreadable, or its data is corrupt."""


@dataclass(frozen=True)
class ImageMeta:
    id: str
    disk_format: str | None = None
    container_format: str | None = None
    size: int | None = None
    checksum: str | None = None  # Glance's MD5 of the data
    status: str = "active"
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_glance(cls, body: dict[str, Any]) -> ImageMeta:
        return cls(
            id=str(body["id"]),
            disk_format=body.get("disk_format"),
            container_format=body.get("container_format"),
            size=body.get("size"),
            checksum=body.get("checksum"),
            status=str(body.get("status", "active")),
            properties={
                k: str(v) for k, v in body.items() if k not in _CORE and isinstance(v, str | int)
            },
        )


class ImageSource(Protocol):
    async def describe(self, image_id: str) -> ImageMeta:
        """The image's record; raise :class:`ImageUnavailable` when there is none."""
        ...

    async def download(self, image_id: str, dest: Path) -> None:
        """Write the image's data to ``dest``; raise :class:`ImageUnavailable` on failure."""
        ...


class ImageApiAuth(Protocol):
    """Where the image API is and a token for it (asked per request: tokens expire)."""

    async def image_url(self) -> str:
        """The image API's v2 root, ``.../v2``."""
        ...

    async def token(self) -> str: ...

    def forget(self) -> None:
        """The token was refused: get a new one next time."""
        ...


class HttpImageSource:
    """The image API over HTTP. A refused token (401) is renewed and the request tried once more."""

    def __init__(self, auth: ImageApiAuth) -> None:
        self._auth = auth

    @asynccontextmanager
    async def _get(self, http: aiohttp.ClientSession, path: str) -> AsyncIterator[Any]:
        for attempt in (1, 2):
            url = f"{(await self._auth.image_url()).rstrip('/')}{path}"
            async with http.get(url, headers={"X-Auth-Token": await self._auth.token()}) as resp:
                if resp.status == 401 and attempt == 1:
                    self._auth.forget()
                    continue
                yield resp
                return

    async def describe(self, image_id: str) -> ImageMeta:
        async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as http:
            try:
                async with self._get(http, f"/images/{image_id}") as resp:
                    if resp.status != 200:
                        raise ImageUnavailable(f"image {image_id}: {resp.status} from image API")
                    return ImageMeta.from_glance(await resp.json())
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ImageUnavailable(f"image {image_id}: image API unreachable: {exc}") from exc

    async def download(self, image_id: str, dest: Path) -> None:
        async with aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as http:
            try:
                async with self._get(http, f"/images/{image_id}/file") as resp:
                    if resp.status != 200:
                        raise ImageUnavailable(f"image {image_id} data: {resp.status}")
                    f = await asyncio.to_thread(open, dest, "wb")
                    try:
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            await asyncio.to_thread(f.write, chunk)
                    finally:
                        await asyncio.to_thread(f.close)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ImageUnavailable(f"image {image_id} data: {exc}") from exc


@dataclass
class LocalImageSource:
    """Images as local files (tests, and hosts that pre-seed images): id -> (path, record)."""

    images: dict[str, tuple[Path, ImageMeta]] = field(default_factory=dict)

    def add(self, path: Path, meta: ImageMeta) -> None:
        self.images[meta.id] = (path, meta)

    async def describe(self, image_id: str) -> ImageMeta:
        try:
            return self.images[image_id][1]
        except KeyError:
            raise ImageUnavailable(f"image {image_id} not found") from None

    async def download(self, image_id: str, dest: Path) -> None:
        try:
            path = self.images[image_id][0]
            await asyncio.to_thread(shutil.copyfile, path, dest)
        except (KeyError, OSError) as exc:
            raise ImageUnavailable(f"image {image_id} data: {exc}") from exc


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class ImageCache:
    """Base files under ``directory``, one per image id, downloaded once."""

    def __init__(self, directory: Path, source: ImageSource) -> None:
        self.directory = directory
        self.source = source
        self._locks: dict[str, asyncio.Lock] = {}

    def path_of(self, image_id: str) -> Path:
        if not image_id or "/" in image_id or image_id.startswith("."):
            raise ImageUnavailable(f"invalid image id {image_id!r}")
        return self.directory / image_id

    async def fetch(self, meta: ImageMeta) -> Path:
        """The local path of ``meta``'s data, downloading (and verifying) it when missing."""
        path = self.path_of(meta.id)
        lock = self._locks.setdefault(meta.id, asyncio.Lock())
        async with lock:
            if await asyncio.to_thread(path.exists):
                await asyncio.to_thread(os.utime, path)  # "last used", for prune
                return path
            if meta.status != "active":
                raise ImageUnavailable(f"image {meta.id} is {meta.status}, not active")
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
            partial = path.with_name(f".{meta.id}.{os.getpid()}.part")
            try:
                await self.source.download(meta.id, partial)
                if meta.checksum and await asyncio.to_thread(_md5, partial) != meta.checksum:
                    raise ImageUnavailable(f"image {meta.id}: data does not match its checksum")
                # Readable by the QEMU user (libvirt relabels what a domain uses, not the dir).
                await asyncio.to_thread(os.chmod, partial, 0o644)
                await asyncio.to_thread(os.replace, partial, path)
            finally:
                await asyncio.to_thread(partial.unlink, missing_ok=True)
        return path

    async def prune(self, in_use: set[str], min_age_s: float = 600.0) -> list[str]:
        """Remove cached images no instance uses and none fetched within ``min_age_s`` (a spawn
        between its fetch and its overlay must not lose its base); the ids removed."""

        def sweep() -> list[str]:
            if not self.directory.is_dir():
                return []
            gone = []
            cutoff = time.time() - min_age_s
            for entry in self.directory.iterdir():
                if entry.name.startswith(".") or entry.name in in_use:
                    continue
                if entry.stat().st_mtime > cutoff:
                    continue
                entry.unlink(missing_ok=True)
                gone.append(entry.name)
            return gone

        return await asyncio.to_thread(sweep)
