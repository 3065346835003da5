"""Image data (Glance v2) through the running cloud: upload, download, ranges, glance-direct import,
and the ways an upload goes wrong (conflicts, a client that goes away, quota, the store, a crash).

Driven like a user: the ``openstack`` CLI, openstacksdk, and ``requests``/raw sockets where a client
must misbehave. Sizes are a few MB; the 500 MB memory test is marked slow.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import openstack.connection
import pytest
import requests

from tests.conftest import dsn_for
from tests.system.conftest import (
    RunningCloud,
    create_database,
    drop_database,
    start_cloud,
    stop_cloud,
    unique,
)

MB = 1024 * 1024
OCTET = {"Content-Type": "application/octet-stream"}


# -- helpers ------------------------------------------------------------------------------------


def headers(conn: openstack.connection.Connection, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": conn.session.get_token(), **extra}


def new_image(conn: openstack.connection.Connection, **attrs: Any) -> str:
    attrs = {"disk_format": "raw", "container_format": "bare"} | attrs
    image = conn.image.create_image(name=unique("img"), **attrs)
    return str(image.id)


def image_url(cloud: RunningCloud, image_id: str, sub: str = "") -> str:
    return f"{cloud.url}/image/v2/images/{image_id}" + (f"/{sub}" if sub else "")


def show(cloud: RunningCloud, conn: openstack.connection.Connection, image_id: str) -> Any:
    reply = requests.get(image_url(cloud, image_id), headers=headers(conn), timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_status(
    cloud: RunningCloud, conn: openstack.connection.Connection, image_id: str, wanted: str
) -> Any:
    deadline = time.monotonic() + 30
    while True:
        image = show(cloud, conn, image_id)
        if image["status"] == wanted or time.monotonic() > deadline:
            assert image["status"] == wanted, image
            return image
        time.sleep(0.05)


def put(
    cloud: RunningCloud, conn: Any, image_id: str, data: Any, **extra: str
) -> requests.Response:
    return requests.put(
        image_url(cloud, image_id, "file"),
        data=data,
        headers=headers(conn, **(OCTET | extra)),
        timeout=60,
    )


def leftovers(state_dir: Path, image_id: str) -> list[Path]:
    """Files of ``image_id`` anywhere in the store, and temp files of any upload."""
    root = state_dir / "images"
    return [
        p for p in root.rglob("*") if p.is_file() and (image_id in p.name or p.parent.name == "tmp")
    ]


def cut_upload(cloud: RunningCloud, token: str, image_id: str, total: int, sent: int) -> None:
    """A client that announces ``total`` bytes, sends ``sent`` and hangs up."""
    url = urlsplit(image_url(cloud, image_id, "file"))
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            (
                f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nX-Auth-Token: {token}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
            ).encode()
        )
        sock.sendall(os.urandom(sent))
        time.sleep(0.3)  # let the gateway take it in before the connection drops


@pytest.fixture(scope="module")
def admin(cloud: RunningCloud) -> openstack.connection.Connection:
    return cloud.sdk("aiostack-admin")


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "disk.img"
    path.write_bytes(os.urandom(3 * MB + 12345))
    return path


# -- the happy paths ----------------------------------------------------------------------------


def test_cli_create_with_file_then_save_is_byte_identical(
    cloud: RunningCloud, admin: Any, payload: Path, tmp_path: Path
) -> None:
    data = payload.read_bytes()
    created = cloud.openstack(
        "image", "create", "--file", str(payload), "--disk-format", "qcow2",
        "--container-format", "bare", unique("cli"),
    )  # fmt: skip
    assert created["status"] == "active"
    assert created["size"] == len(data)
    assert created["checksum"] == hashlib.md5(data).hexdigest()
    image = show(cloud, admin, created["id"])
    assert image["os_hash_algo"] == "sha512"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()

    out = tmp_path / "saved.img"
    cloud.openstack("image", "save", "--file", str(out), created["id"])
    assert out.read_bytes() == data


def test_download_headers_and_ranges(cloud: RunningCloud, admin: Any) -> None:
    data = os.urandom(2 * MB + 7)
    image_id = new_image(admin)
    assert put(cloud, admin, image_id, data).status_code == 204
    url, auth = image_url(cloud, image_id, "file"), headers(admin)

    whole = requests.get(url, headers=auth, timeout=30)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Length"] == str(len(data))
    assert whole.headers["Content-MD5"] == hashlib.md5(data).hexdigest()  # hex, as Glance

    size = len(data)
    for spec, first, last in (
        ("bytes=0-9", 0, 9),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-100", size - 100, size - 1),
        (f"bytes=5-{size + 50}", 5, size - 1),
    ):
        part = requests.get(url, headers=auth | {"Range": spec}, timeout=30)
        assert part.status_code == 206, spec
        assert part.content == data[first : last + 1], spec
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert part.headers["Content-Length"] == str(last - first + 1)

    for spec in (f"bytes={size}-", "bytes=9-3", "pages=0-1", "bytes=-0"):
        bad = requests.get(url, headers=auth | {"Range": spec}, timeout=30)
        assert bad.status_code == 416, spec
    assert requests.get(url, headers=auth | {"Range": "bytes=0-1,5-6"}).status_code == 400

    # openstacksdk checks the data against os_hash_value (and Content-MD5) as it downloads.
    assert admin.image.download_image(image_id).content == data


def test_chunked_upload_of_unknown_size(cloud: RunningCloud, admin: Any) -> None:
    blocks = [os.urandom(100_000) for _ in range(17)]
    image_id = new_image(admin)
    assert put(cloud, admin, image_id, iter(blocks)).status_code == 204
    image = show(cloud, admin, image_id)
    assert image["size"] == 1_700_000
    assert image["checksum"] == hashlib.md5(b"".join(blocks)).hexdigest()


def test_glance_direct_import_through_the_sdk(cloud: RunningCloud, admin: Any) -> None:
    info = requests.get(f"{cloud.url}/image/v2/info/import", headers=headers(admin), timeout=10)
    assert info.json()["import-methods"]["value"] == ["glance-direct"]
    stores = requests.get(f"{cloud.url}/image/v2/info/stores", headers=headers(admin), timeout=10)
    assert stores.status_code == 404  # no multi-store, as Glance without enabled_backends

    data = os.urandom(MB + 3)
    image = admin.image.create_image(
        name=unique("direct"), data=data, disk_format="raw", container_format="bare",
        use_import=True,
    )  # fmt: skip
    done = wait_status(cloud, admin, image.id, "active")
    assert done["size"] == len(data)
    assert done["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert admin.image.download_image(image.id).content == data

    # The same in steps: stage (uploading, staged size), import (202), active.
    data = os.urandom(MB // 2)
    image_id = new_image(admin)
    staged = admin.image.stage_image(admin.image.get_image(image_id), data=data)
    assert staged.status == "uploading"
    assert show(cloud, admin, image_id)["size"] == len(data)
    again = requests.put(
        image_url(cloud, image_id, "stage"), data=b"x", headers=headers(admin, **OCTET)
    )
    assert again.status_code == 409
    admin.image.import_image(admin.image.get_image(image_id), method="glance-direct")
    assert (
        wait_status(cloud, admin, image_id, "active")["checksum"] == hashlib.md5(data).hexdigest()
    )
    assert not list((cloud.state_dir / "images" / "staging").glob(f"{image_id}*"))


def test_import_refusals(cloud: RunningCloud, admin: Any) -> None:
    image_id = new_image(admin)
    url, auth = image_url(cloud, image_id, "import"), headers(admin)
    direct = {"method": {"name": "glance-direct"}}
    assert requests.post(url, json=direct, headers=auth).status_code == 409  # not staged
    web = {"method": {"name": "web-download", "uri": "http://example.com/x"}}
    assert requests.post(url, json=web, headers=auth).status_code == 400
    assert requests.post(url, json={"method": {}}, headers=auth).status_code == 400
    assert requests.post(url, json={"nope": 1}, headers=auth).status_code == 400


# -- refusals -----------------------------------------------------------------------------------


def test_upload_refusals(cloud: RunningCloud, admin: Any) -> None:
    image_id = new_image(admin)
    assert put(cloud, admin, image_id, b"abc").status_code == 204
    again = put(cloud, admin, image_id, b"abc")
    assert again.status_code == 409  # active
    assert "active" in again.json()["message"]

    fresh = new_image(admin)
    wrong_type = requests.put(
        image_url(cloud, fresh, "file"), data=b"abc", headers=headers(admin), timeout=10
    )
    assert wrong_type.status_code == 415
    as_text = put(cloud, admin, fresh, b"abc", **{"Content-Type": "text/plain"})
    assert as_text.status_code == 415
    assert put(cloud, admin, fresh, b"abc", **{"X-OpenStack-Image-Size": "x"}).status_code == 400
    mismatch = put(cloud, admin, fresh, b"abcdef", **{"X-OpenStack-Image-Size": "3"})
    assert mismatch.status_code == 400
    assert show(cloud, admin, fresh)["status"] == "queued"
    assert put(cloud, admin, str(uuid.uuid4()), b"abc").status_code == 404

    bare = requests.post(
        f"{cloud.url}/image/v2/images", json={"name": unique("bare")}, headers=headers(admin)
    )
    no_format = bare.json()["id"]
    assert put(cloud, admin, no_format, b"abc").status_code == 400

    # Queued: no data yet, 204 as Glance answers.
    assert requests.get(image_url(cloud, fresh, "file"), headers=headers(admin)).status_code == 204

    # Deactivated: admins may still download; the upload is a 409 (a status transition).
    admin.image.deactivate_image(image_id)
    assert (
        requests.get(image_url(cloud, image_id, "file"), headers=headers(admin)).content == b"abc"
    )
    assert put(cloud, admin, image_id, b"abc").status_code == 409
    admin.image.reactivate_image(image_id)


def test_concurrent_uploads_one_wins(cloud: RunningCloud, admin: Any) -> None:
    image_id = new_image(admin)
    token = admin.session.get_token()
    url = urlsplit(image_url(cloud, image_id, "file"))
    data = os.urandom(MB)
    with socket.create_connection((url.hostname, url.port)) as slow:
        slow.sendall(
            (
                f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nX-Auth-Token: {token}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        slow.sendall(data[:1000])
        wait_status(cloud, admin, image_id, "saving")
        assert put(cloud, admin, image_id, b"other").status_code == 409
        slow.sendall(data[1000:])
        reply = slow.makefile("rb").readline()
    assert b" 204 " in reply
    assert show(cloud, admin, image_id)["checksum"] == hashlib.md5(data).hexdigest()


def test_client_gone_mid_upload_leaves_the_image_queued_and_no_file(
    cloud: RunningCloud, admin: Any
) -> None:
    image_id = new_image(admin)
    cut_upload(cloud, admin.session.get_token(), image_id, total=20 * MB, sent=3 * MB)
    wait_status(cloud, admin, image_id, "queued")
    deadline = time.monotonic() + 5
    while leftovers(cloud.state_dir, image_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(cloud.state_dir, image_id) == []
    # And the image takes a new upload.
    assert put(cloud, admin, image_id, b"second try").status_code == 204
    assert show(cloud, admin, image_id)["size"] == len(b"second try")


def test_client_gone_mid_download(cloud: RunningCloud, admin: Any) -> None:
    image_id = new_image(admin)
    assert put(cloud, admin, image_id, os.urandom(8 * MB)).status_code == 204
    url = urlsplit(image_url(cloud, image_id, "file"))
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"X-Auth-Token: {admin.session.get_token()}\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    # The gateway shrugs it off (the session fixture fails on any unhandled error) and serves on.
    again = requests.get(image_url(cloud, image_id, "file"), headers=headers(admin), timeout=30)
    assert len(again.content) == 8 * MB


def test_delete_removes_the_data(cloud: RunningCloud, admin: Any) -> None:
    image_id = new_image(admin)
    assert put(cloud, admin, image_id, os.urandom(1000)).status_code == 204
    assert leftovers(cloud.state_dir, image_id)
    admin.image.delete_image(image_id)
    assert leftovers(cloud.state_dir, image_id) == []


# -- a cloud of our own: quota, store failure, crash and restart, memory ------------------------


class OwnCloud:
    """``aiostack up`` on a database and state dir of its own, restartable on both."""

    def __init__(self, tmp: Path, **settings: str) -> None:
        self.tmp, self.settings = tmp, settings
        self.database = asyncio.run(create_database())
        self.state = tmp / "state"
        self.proc, self.cloud = start_cloud(tmp, self.database, state=self.state, **settings)

    def restart(self) -> None:
        """Start again on the same port (clouds.yaml and the catalog name it)."""
        if self.proc.poll() is None:
            stop_cloud(self.proc)
        port = int(urlsplit(self.cloud.url).port or 0)
        self.proc, self.cloud = start_cloud(
            self.tmp, self.database, state=self.state, port=port, **self.settings
        )

    def close(self) -> None:
        stop_cloud(self.proc)
        asyncio.run(drop_database(self.database))

    def sql(self, query: str, *args: Any) -> Any:
        async def run() -> Any:
            conn = await asyncpg.connect(dsn_for(self.database))
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return asyncio.run(run())


def test_over_quota_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    own = OwnCloud(tmp_path, image_quota_bytes="1000000")
    try:
        cloud, conn = own.cloud, own.cloud.sdk("aiostack-admin")
        image_id = new_image(conn)
        # Known size (Content-Length): refused before a byte is stored.
        assert put(cloud, conn, image_id, os.urandom(1_500_000)).status_code == 413
        # Unknown size (chunked): cut off once past the quota.
        stream = iter([os.urandom(200_000) for _ in range(8)])
        over = put(cloud, conn, image_id, stream)
        assert over.status_code == 413, over.text
        assert show(cloud, conn, image_id)["status"] == "queued"
        assert leftovers(own.state, image_id) == []

        assert put(cloud, conn, image_id, os.urandom(600_000)).status_code == 204
        second = new_image(conn)
        assert put(cloud, conn, second, iter([os.urandom(500_000)])).status_code == 413
        assert put(cloud, conn, second, os.urandom(400_000)).status_code == 204

        # A store that cannot write: the upload is killed, 503, never a 500.
        third = new_image(conn)
        conn.image.delete_image(second)
        tmp = own.state / "images" / "tmp"
        tmp.rmdir()
        tmp.write_text("not a directory")
        try:
            failed = put(cloud, conn, third, os.urandom(1000))
        finally:
            tmp.unlink()
            tmp.mkdir()
        assert failed.status_code == 503, failed.text
        assert show(cloud, conn, third)["status"] == "killed"
    finally:
        own.close()
    assert '"api.unhandled"' not in own.cloud.log_path.read_text()


def test_crash_mid_upload_then_restart_cleans_up(tmp_path: Path) -> None:
    own = OwnCloud(tmp_path)
    try:
        conn = own.cloud.sdk("aiostack-admin")
        image_id = new_image(conn)
        url = urlsplit(image_url(own.cloud, image_id, "file"))
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(
                (
                    f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                    f"X-Auth-Token: {conn.session.get_token()}\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: 100000000\r\n\r\n"
                ).encode()
            )
            sock.sendall(os.urandom(5 * MB))
            wait_status(own.cloud, conn, image_id, "saving")
            time.sleep(0.3)
            assert list((own.state / "images" / "tmp").iterdir())  # a partial file
            # An accepted import, interrupted before it ran: the restart must finish it.
            staged_id = new_image(conn)
            conn.image.stage_image(conn.image.get_image(staged_id), data=b"staged bytes")
            own.proc.kill()  # kill -9, mid-upload
            own.proc.wait()
        own.sql("UPDATE img_images SET status = 'importing' WHERE id = $1", staged_id)
        own.restart()
        conn = own.cloud.sdk("aiostack-admin")
        assert show(own.cloud, conn, image_id)["status"] == "queued"
        assert leftovers(own.state, image_id) == []
        imported = wait_status(own.cloud, conn, staged_id, "active")
        assert imported["checksum"] == hashlib.md5(b"staged bytes").hexdigest()
        assert put(own.cloud, conn, image_id, b"after the crash").status_code == 204
    finally:
        own.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RssSampler:
    """The highest RSS of a process while the ``with`` body runs (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_kib(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_500_mb_upload_keeps_gateway_memory_flat(tmp_path: Path) -> None:
    own = OwnCloud(tmp_path)
    try:
        cloud, conn = own.cloud, own.cloud.sdk("aiostack-admin")
        warm = new_image(conn)
        assert put(cloud, conn, warm, os.urandom(4 * MB)).status_code == 204  # threads, buffers
        baseline = _rss_kib(own.proc.pid)

        block, count = os.urandom(MB), 500
        digest = hashlib.md5()
        for _ in range(count):
            digest.update(block)
        image_id = new_image(conn)
        started = time.perf_counter()
        with RssSampler(own.proc.pid) as upload:
            reply = put(cloud, conn, image_id, (block for _ in range(count)))
        up_s = time.perf_counter() - started
        assert reply.status_code == 204, reply.text
        assert show(cloud, conn, image_id)["checksum"] == digest.hexdigest()

        started, received = time.perf_counter(), 0
        with (
            RssSampler(own.proc.pid) as download,
            requests.get(
                image_url(cloud, image_id, "file"), headers=headers(conn), stream=True, timeout=60
            ) as reply,
        ):
            for chunk in reply.iter_content(MB):
                received += len(chunk)
        down_s = time.perf_counter() - started
        assert received == count * MB

        print(
            f"\ngateway RSS before: {baseline / 1024:.1f} MiB; peak during the 500 MiB upload: "
            f"{upload.peak / 1024:.1f} MiB (+{(upload.peak - baseline) / 1024:.1f}), "
            f"{count / up_s:.0f} MiB/s; peak during the download: {download.peak / 1024:.1f} MiB "
            f"(+{(download.peak - baseline) / 1024:.1f}), {count / down_s:.0f} MiB/s"
        )
        assert upload.peak - baseline < 100 * 1024
        assert download.peak - baseline < 100 * 1024
    finally:
        own.close()
