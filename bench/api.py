"""Identity API: token validation and an authenticated list, beside a bare aiohttp handler.

Processes (this one only orchestrates):

- ``aiostack up`` (``python -m cloud.cli up``) on a fresh database, a private state directory and
  a free port, with production defaults (argon2 cost, log level ``info``; the log goes to a file);
- a bare aiohttp server: one handler returning a small JSON object, on the same Python;
- the load generator, one process per cell (``python -m bench.api load``, the spec on stdin):
  an aiohttp client keeping its connections alive, N workers each sending its next request as soon
  as the previous one answered (closed loop), for a warm-up and then the measured window.

Cells: the bare handler, ``GET /identity/v3/auth/tokens`` (the admin's token as ``X-Auth-Token``
and ``X-Subject-Token``) and ``GET /identity/v3/projects`` (admin token) at each concurrency of
``--api-concurrency``; password authentication (``POST /identity/v3/auth/tokens``) at 1 and 8,
separately, since argon2 bounds it by design. Latency: request sent -> response body read, in the
load generator. Non-2xx answers and transport errors are errors: counted, and the row is marked
INCOMPLETE. A route not in ``/openapi.json`` yet is reported as missing, not as a failure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench.config import Settings
from bench.cpu import CpuMeter
from bench.database import fresh_database
from bench.report import _align
from bench.stats import Result

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = "/identity/v3"
PASSWORD_CONCURRENCY = (1, 8)
TARGET_RATIO = 0.5  # token validation >= 50% of the bare handler's requests/s
TARGET_P99_MS = 20.0  # at concurrency 8
TARGET_P99_CONCURRENCY = 8
READY_TIMEOUT_S = 60.0


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (int(fields[11]) + int(fields[12])) / ticks


# --- the load generator (runs in its own process) ---------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """One cell: what to send, how many workers, for how long."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    concurrency: int
    warmup_s: float
    seconds: float


@dataclass
class LoadOutcome:
    """What the load generator measured in the window (warm-up excluded)."""

    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of the 2xx answers, in seconds
    statuses: dict[str, int] = field(default_factory=dict)  # every answer, "200" or an exception
    cpu_s: float = 0.0  # the load generator's own CPU time in the window


async def generate(spec: LoadSpec) -> LoadOutcome:
    """Closed-loop load: ``spec.concurrency`` workers, each on its own keep-alive connection."""
    connector = aiohttp.TCPConnector(limit=spec.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    body = spec.body.encode() if spec.body is not None else None
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        window_start, window_end = began + spec.warmup_s, began + spec.warmup_s + spec.seconds
        cpu_at_window: list[float] = []

        async def worker() -> None:
            while (sent := time.perf_counter()) < window_end:
                try:
                    async with session.request(
                        spec.method, spec.url, headers=spec.headers, data=body
                    ) as response:
                        await response.read()
                        status = str(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                done = time.perf_counter()
                if window_start <= done <= window_end:
                    statuses[status] += 1
                    if status.startswith("2"):
                        latencies.append(done - sent)

        async def cpu_mark() -> None:
            await asyncio.sleep(spec.warmup_s)
            cpu_at_window.append(time.process_time())

        mark = asyncio.create_task(cpu_mark())
        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
        await mark
        cpu = time.process_time() - cpu_at_window[0]
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    return LoadOutcome(
        ok=ok,
        errors=sum(statuses.values()) - ok,
        seconds=spec.seconds,
        latencies=latencies,
        statuses=dict(statuses),
        cpu_s=cpu,
    )


async def run_load(spec: LoadSpec, server_pid: int) -> tuple[LoadOutcome, list[str]]:
    """Run one cell in a load-generator process; its outcome and CPU notes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.api",
        "load",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(asdict(spec)).encode())
    proc.stdin.write_eof()
    # "go" when the load generator starts sending: CPU is measured from there on.
    go = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    if go.strip() != b"go":
        _, err = await proc.communicate()
        raise RuntimeError(f"load generator did not start: {go!r} {err.decode()[-500:]}")
    server_before, meter = _cpu_seconds(server_pid), CpuMeter()
    out, err = await asyncio.wait_for(proc.communicate(), timeout=spec.warmup_s + spec.seconds + 60)
    server_cpu = _cpu_seconds(server_pid) - server_before
    if proc.returncode != 0:
        raise RuntimeError(f"load generator exited {proc.returncode}: {err.decode()[-500:]}")
    outcome = LoadOutcome(**json.loads(out))
    span = spec.warmup_s + spec.seconds
    postgres = meter.cores().get("postgres", math.nan)
    notes = [
        f"cpu (cores of {os.cpu_count()}): server {server_cpu / span:.2f}, "
        f"load generator {outcome.cpu_s / spec.seconds:.2f}, postgres {postgres:.2f}"
    ]
    return outcome, notes


# --- the servers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log_path: Path | None = None


def _bare_app() -> web.Application:
    payload = {"status": "ok", "service": "bare"}

    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(payload)

    app = web.Application()
    app.router.add_get("/", handler)
    return app


async def _wait_ready(proc: asyncio.subprocess.Process, url: str, ready: Path | None) -> None:
    """Until ``url`` answers (and ``ready`` exists); fails if the process exits first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the server process exited {proc.returncode}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply:
                    if reply.status < 400 and (
                        ready is None or await asyncio.to_thread(ready.exists)
                    ):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {READY_TIMEOUT_S:.0f} s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def _process(
    args: Sequence[str], log_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``args`` (a Python module) running with its output in ``log_path``; stopped on exit."""
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        yield proc
    except RuntimeError as exc:  # not ready: show the end of its log
        tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-1500:]
        raise RuntimeError(f"{exc}\n{tail}") from None
    finally:
        await _stop(proc)


@asynccontextmanager
async def bare_server(workdir: Path) -> AsyncIterator[Server]:
    """The bare aiohttp handler in its own process."""
    port = _free_port()
    args = ("-m", "bench.api", "bare", str(port))
    async with _process(args, workdir / "bare.log") as proc:
        url = f"http://127.0.0.1:{port}/"
        await _wait_ready(proc, url, None)
        yield Server(url, proc.pid)


@asynccontextmanager
async def aiostack(settings: Settings, workdir: Path) -> AsyncIterator[Server]:
    """``aiostack up`` on a fresh database; production settings but for the port and state dir."""
    async with fresh_database(settings.database_url) as dsn:
        port = _free_port()
        state = workdir / "state"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSTACK_")}
        env |= {
            "AIOSTACK_DATABASE_URL": dsn,
            "AIOSTACK_LISTEN": f"127.0.0.1:{port}",
            "AIOSTACK_STATE_DIR": str(state),
            "AIOSTACK_LOG_FORMAT": "json",
            "AIOSTACK_COMPUTE_DRIVER": "fake",
        }
        log_path = workdir / "aiostack.log"
        async with _process(("-m", "cloud.cli", "up"), log_path, env) as proc:
            url = f"http://127.0.0.1:{port}"
            await _wait_ready(proc, f"{url}{IDENTITY}", state / "clouds.yaml")
            yield Server(url, proc.pid, log_path)


def password_body(clouds_yaml: Path) -> dict[str, Any]:
    """The admin's project-scoped password authentication, from the clouds.yaml bootstrap wrote."""
    auth = yaml.safe_load(clouds_yaml.read_text())["clouds"]["aiostack-admin"]["auth"]
    user = {
        "name": auth["username"],
        "domain": {"name": auth.get("user_domain_name", "Default")},
        "password": auth["password"],
    }
    project = {
        "name": auth["project_name"],
        "domain": {"name": auth.get("project_domain_name", "Default")},
    }
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": project},
        }
    }


async def _token(url: str, body: dict[str, Any]) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}{IDENTITY}/auth/tokens", json=body) as reply,
    ):
        if reply.status != 201:
            raise RuntimeError(f"password authentication: {reply.status} {await reply.text()}")
        return reply.headers["X-Subject-Token"]


async def _served(url: str, method: str, path: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/openapi.json") as reply:
        document = await reply.json()
    return method.lower() in document.get("paths", {}).get(path, {})


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    label: str
    key: str
    spec: LoadSpec
    server_pid: int


def _result(cell: Cell, outcome: LoadOutcome, notes: list[str]) -> Result:
    statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(outcome.statuses.items()))
    notes = [f"answers in the window: {statuses or 'none'}", *notes]
    if outcome.errors:
        notes.insert(0, f"{outcome.errors:,} errors (non-2xx or transport)")
    return Result(
        cell.label,
        cell.key,
        outcome.ok,
        outcome.seconds,
        outcome.latencies,
        notes=notes,
        complete=outcome.errors == 0 and outcome.ok > 0,
    )


async def _measure(cell: Cell) -> Result:
    _progress(f"api: {cell.label}")
    outcome, notes = await run_load(cell.spec, cell.server_pid)
    return _result(cell, outcome, notes)


async def api_bench(settings: Settings) -> list[Result]:
    """Every cell, in order: per concurrency the bare handler, validation, the project list; then
    password authentication."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="aiostack-bench-api-") as tmp:
        workdir = Path(tmp)
        async with bare_server(workdir) as bare, aiostack(settings, workdir) as cloud:
            body = password_body(workdir / "state" / "clouds.yaml")
            token = await _token(cloud.url, body)
            auth = {"X-Auth-Token": token}
            projects_served = await _served(cloud.url, "GET", f"{IDENTITY}/projects")

            def spec(method: str, url: str, headers: dict[str, str], n: int) -> LoadSpec:
                return LoadSpec(
                    method,
                    url,
                    headers,
                    json.dumps(body) if method == "POST" else None,
                    n,
                    settings.api_warmup,
                    settings.api_seconds,
                )

            for n in settings.api_concurrency:
                cells = [
                    Cell(f"api bare aiohttp, c={n}", f"api.bare.{n}",
                         spec("GET", bare.url, {}, n), bare.pid),
                    Cell(f"api GET auth/tokens, c={n}", f"api.validate.{n}",
                         spec("GET", f"{cloud.url}{IDENTITY}/auth/tokens",
                              auth | {"X-Subject-Token": token}, n), cloud.pid),
                ]  # fmt: skip
                for cell in cells:
                    results.append(await _measure(cell))
                label, key = f"api GET projects, c={n}", f"api.projects.{n}"
                if not projects_served:
                    note = f"missing: GET {IDENTITY}/projects is not in /openapi.json yet"
                    results.append(Result(f"{label} (missing)", key, 0, 0.0, notes=[note]))
                    continue
                url = f"{cloud.url}{IDENTITY}/projects"
                results.append(
                    await _measure(Cell(label, key, spec("GET", url, auth, n), cloud.pid))
                )
            for n in PASSWORD_CONCURRENCY:
                url = f"{cloud.url}{IDENTITY}/auth/tokens"
                headers = {"Content-Type": "application/json"}
                cell = Cell(
                    f"api POST auth/tokens (password), c={n}",
                    f"api.password.{n}",
                    spec("POST", url, headers, n),
                    cloud.pid,
                )
                results.append(await _measure(cell))
        if results:
            results[0].notes.append(
                "servers: aiostack up (production defaults: argon2, log level info, in-process "
                "bus) and a bare aiohttp handler, one process each; load from a separate process"
            )
    return results


# --- targets ----------------------------------------------------------------------------------


def _find(results: Sequence[Result], key: str) -> Result | None:
    return next((r for r in results if r.key == key), None)


def _usable(result: Result | None) -> bool:
    return result is not None and result.error is None and result.events > 0


def targets(results: Sequence[Result]) -> str:
    """The identity API's goals with PASS/MISS, in the layout of ``report.targets``."""
    rows: list[tuple[str, ...]] = [("API target", "goal", "measured", "")]
    crashed = _find(results, "api")  # api_bench raised: bench.__main__ made this failed row
    if crashed is not None and crashed.error is not None:
        rows.append(("identity API", "all API targets", f"failed: {crashed.error}", "MISS"))
    concurrencies = sorted(
        {int(r.key.rsplit(".", 1)[1]) for r in results if r.key.startswith("api.bare.")}
    )
    for n in concurrencies:
        bare, validate = _find(results, f"api.bare.{n}"), _find(results, f"api.validate.{n}")
        name, goal = f"token validation vs bare handler, c={n}", f">= {TARGET_RATIO:.0%} of bare"
        if not (_usable(bare) and _usable(validate)):
            rows.append((name, goal, "failed", "MISS"))
            continue
        assert bare is not None and validate is not None
        ratio = validate.rate / bare.rate
        verdict = "PASS" if validate.complete and ratio >= TARGET_RATIO else "MISS"
        measured = f"{validate.rate:,.0f} vs {bare.rate:,.0f} req/s ({ratio:.0%})"
        rows.append((name, goal, measured, verdict))
    for what, kind in (("token validation", "validate"), ("project list", "projects")):
        name = f"{what} p99, c={TARGET_P99_CONCURRENCY}"
        goal = f"p99 < {TARGET_P99_MS:g} ms"
        result = _find(results, f"api.{kind}.{TARGET_P99_CONCURRENCY}")
        if result is None:
            rows.append((name, goal, "not run", "-"))
        elif result.error is None and result.events == 0 and result.complete:
            rows.append((name, goal, "route missing", "-"))
        elif not _usable(result):
            rows.append((name, goal, "failed", "MISS"))
        else:
            ok = result.complete and result.p99_ms < TARGET_P99_MS
            rows.append((name, goal, f"p99 {result.p99_ms:,.1f} ms", "PASS" if ok else "MISS"))
    rates = [
        f"{r.rate:,.1f} req/s at c={r.key.rsplit('.', 1)[1]}"
        for r in results
        if r.key.startswith("api.password.") and _usable(r)
    ]
    rows.append(
        ("password authentication", "argon2-bound: reported", ", ".join(rates) or "failed", "-")
    )
    lines = _align(rows, left=3)
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([lines[0], rule, *lines[1:], "", LEGEND])


LEGEND = (
    "api rows: events = 2xx answers in the measured window (warm-up excluded), events/s = requests/s;\n"
    "latency from request sent to response body read, in the load-generator process; c = concurrent\n"
    "keep-alive connections, each sending its next request when the previous one answered."
)


# --- entry points of the child processes --------------------------------------------------------


def _load_main() -> int:
    spec = LoadSpec(**json.loads(sys.stdin.read()))
    print("go", flush=True)
    outcome = asyncio.run(generate(spec))
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m bench.api bare PORT`` or ``python -m bench.api load`` (spec as JSON on stdin)."""
    if argv[:1] == ["bare"] and len(argv) == 2:
        web.run_app(_bare_app(), host="127.0.0.1", port=int(argv[1]), print=None, access_log=None)
        return 0
    if argv == ["load"]:
        return _load_main()
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
