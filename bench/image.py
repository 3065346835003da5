"""The image data path: a 1 GiB upload and download through the gateway against a raw file copy.

All three move the same bytes between files on one filesystem, in the same run:

- raw copy: read the source file and write a new file, fsync'd (what the store must do at least),
  measured before and after the gateway runs, the faster one counting;
- gateway upload: ``PUT /image/v2/images/{id}/file`` of the source file (the store hashes md5 and
  sha512, writes a temp file, fsyncs, renames);
- gateway download: ``GET .../file`` into a new file, fsync'd.

Target: each gateway direction at >= 50% of the raw copy's rate. ``aiostack up`` runs in a
subprocess on a fresh database; the client is aiohttp in this process. ``python -m bench.image``
runs this alone (``--quick``: 256 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.database import fresh_database
from bench.stats import Result

MIB = 1 << 20
TARGET = 0.5  # of the raw copy's rate, both ways
ROOT = Path(__file__).resolve().parents[1]


def _copy(source: Path, target: Path) -> None:
    with source.open("rb", buffering=0) as src, target.open("wb", buffering=0) as dst:
        while block := src.read(MIB):
            dst.write(block)
        os.fsync(dst.fileno())


def _make_source(path: Path, size_mib: int) -> None:
    """``size_mib`` MiB of random-looking data (one random MiB repeated: hashing costs the same)."""
    block = os.urandom(MIB)
    with path.open("wb") as file:
        for _ in range(size_mib):
            file.write(block)
    os.sync()  # each measurement starts with nothing left to write back


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _cloud(dsn: str, state: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``aiostack up`` on ``dsn``; yields its URL and the admin's clouds.yaml auth section."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSTACK_")}
    env |= {
        "AIOSTACK_DATABASE_URL": dsn,
        "AIOSTACK_STATE_DIR": str(state),
        "AIOSTACK_LISTEN": f"127.0.0.1:{port}",
        "AIOSTACK_LOG_LEVEL": "warning",
        "AIOSTACK_LOG_FORMAT": "json",
        "AIOSTACK_COMPUTE_DRIVER": "fake",
    }
    log = (state.parent / "aiostack.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud.cli", "up"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        clouds = state / "clouds.yaml"
        deadline = time.monotonic() + 60
        while not clouds.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"aiostack up did not start; see {log.name}")
            time.sleep(0.2)
        time.sleep(0.5)  # the file is written just before the gateway listens
        auth = yaml.safe_load(clouds.read_text())["clouds"]["aiostack-admin"]["auth"]
        yield f"http://127.0.0.1:{port}", auth
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def _token(session: aiohttp.ClientSession, url: str, auth: dict[str, Any]) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": auth["username"],
                        "password": auth["password"],
                        "domain": {"name": auth["user_domain_name"]},
                    }
                },
            },
            "scope": {
                "project": {
                    "name": auth["project_name"],
                    "domain": {"name": auth["project_domain_name"]},
                }
            },
        }
    }
    for _ in range(50):
        try:
            async with session.post(f"{url}/identity/v3/auth/tokens", json=body) as reply:
                if reply.status == 201:
                    return reply.headers["X-Subject-Token"]
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("no token from the gateway")


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb", buffering=0) as file:
        while block := await asyncio.to_thread(file.read, MIB):
            yield block


async def _write_file(chunks: AsyncIterator[bytes], path: Path) -> None:
    """Write in a thread while the next chunk arrives (one write in flight), then fsync."""
    with path.open("wb", buffering=0) as file:
        writing: asyncio.Future[Any] | None = None
        async for chunk in chunks:
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(asyncio.to_thread(file.write, chunk))
        if writing is not None:
            await writing
        await asyncio.to_thread(os.fsync, file.fileno())


async def _gateway(
    url: str, auth: dict[str, Any], source: Path, target: Path
) -> tuple[float, float]:
    """Seconds to upload ``source`` and to download it again into ``target``."""
    size = await asyncio.to_thread(os.path.getsize, source)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        headers = {"X-Auth-Token": await _token(session, url, auth)}
        meta = {"name": "bench", "disk_format": "raw", "container_format": "bare"}
        async with session.post(f"{url}/image/v2/images", json=meta, headers=headers) as reply:
            reply.raise_for_status()
            file_url = f"{url}/image/v2/images/{(await reply.json())['id']}/file"
        put_headers = headers | {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-OpenStack-Image-Size": str(size),
        }
        await asyncio.to_thread(os.sync)
        started = time.perf_counter()
        async with session.put(file_url, data=_read_file(source), headers=put_headers) as reply:
            if reply.status != 204:
                raise RuntimeError(f"upload: {reply.status} {await reply.text()}")
        upload_s = time.perf_counter() - started

        await asyncio.to_thread(os.sync)
        started = time.perf_counter()
        async with session.get(file_url, headers=headers) as reply:
            reply.raise_for_status()
            await _write_file(reply.content.iter_chunked(MIB), target)
        download_s = time.perf_counter() - started
    received = await asyncio.to_thread(os.path.getsize, target)
    if received != size:
        raise RuntimeError(f"downloaded {received} bytes, not {size}")
    return upload_s, download_s


def _mbs(size_mib: int, seconds: float) -> float:
    return size_mib * MIB / 1e6 / seconds if seconds > 0 else 0.0


def summary(
    size_mib: int, raw_s: tuple[float, float], upload_s: float, download_s: float
) -> list[str]:
    """The comparison as lines: MB/s of each, ratio to the faster raw copy, PASS/MISS."""
    before, after = (_mbs(size_mib, s) for s in raw_s)
    raw = max(before, after)
    lines = [f"{size_mib} MiB, one filesystem; target: gateway >= {TARGET:.0%} of the raw copy"]
    lines.append(
        f"{'raw copy (read + write + fsync)':<34} {raw:8.1f} MB/s  "
        f"(before {before:.1f}, after {after:.1f}: the faster counts)"
    )
    for name, seconds in (("gateway upload", upload_s), ("gateway download", download_s)):
        rate = _mbs(size_mib, seconds)
        ratio = rate / raw if raw else 0.0
        verdict = "PASS" if ratio >= TARGET else "MISS"
        lines.append(f"{name:<34} {rate:8.1f} MB/s  {ratio:5.0%} of raw  {verdict}")
    return lines


async def _raw_copy(source: Path, target: Path) -> float:
    await asyncio.to_thread(os.sync)
    started = time.perf_counter()
    await asyncio.to_thread(_copy, source, target)
    seconds = time.perf_counter() - started
    await asyncio.to_thread(target.unlink)
    return seconds


async def measure(admin_dsn: str, size_mib: int) -> tuple[list[Result], list[str]]:
    """Raw copy, then upload and download through a fresh cloud; the rows and the summary."""
    with tempfile.TemporaryDirectory(prefix="aiostack-bench-image-") as tmp:
        work = Path(tmp)
        source = work / "source.img"
        await asyncio.to_thread(_make_source, source, size_mib)
        before = await _raw_copy(source, work / "copy.img")
        async with fresh_database(admin_dsn) as dsn:
            with _cloud(dsn, work / "state") as (url, auth):
                upload_s, download_s = await _gateway(url, auth, source, work / "download.img")
        after = await _raw_copy(source, work / "copy.img")
    lines = summary(size_mib, (before, after), upload_s, download_s)
    rows = [
        Result("image: raw file copy (MiB)", "image.raw", size_mib, min(before, after)),
        Result("image: gateway upload (MiB)", "image.upload", size_mib, upload_s),
        Result("image: gateway download (MiB)", "image.download", size_mib, download_s),
    ]
    rows[-1].notes.extend(lines)
    return rows, lines


async def run(admin_dsn: str, size_mib: int) -> list[Result]:
    """The rows for ``python -m bench`` (the summary is in the last row's notes)."""
    rows, _ = await measure(admin_dsn, size_mib)
    return rows


def main(argv: list[str] | None = None) -> int:
    from bench.config import DEFAULT_DATABASE_URL

    p = argparse.ArgumentParser(prog="python -m bench.image", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="256 MiB instead of 1024")
    p.add_argument("--size-mib", type=int, help="image size in MiB")
    p.add_argument("--database-url", default=os.environ.get("AIOSTACK_BENCH_DATABASE_URL"))
    args = p.parse_args(argv)
    size = args.size_mib or (256 if args.quick else 1024)
    _, lines = asyncio.run(measure(args.database_url or DEFAULT_DATABASE_URL, size))
    print("\n".join(lines))
    return 0 if all(not line.endswith("MISS") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
