"""Property-based fuzzing of every identity operation in the served OpenAPI document.

The schema comes from the running gateway's ``GET /openapi.json`` (restricted to ``/identity``), so
operations that land later are fuzzed without touching this file. schemathesis generates requests
(schema-valid and schema-violating ones) for each operation, hypothesis drives them, and every
response must:

- never be a 5xx;
- carry ``X-Openstack-Request-Id``;
- if it is a 4xx (and not a HEAD), be Keystone's ``{"error": {"code", "title", "message"}}`` with
  ``code`` equal to the status.

Three passes: as the admin, as the demo member (403s expected) and with no or a garbage token (401
for every operation that requires one, or the gateway's 400 for a URL it refuses before
authenticating). Some examples use ids of resources that exist (seeded before each pass), the others
made-up ones. ``DELETE /auth/tokens`` only ever revokes a token derived for the purpose, never the
fuzzer's own. Hand-written hostile bodies (malformed JSON, non-UTF-8, an array, 2 MB, a wrong
Content-Type, deep nesting, huge numbers, NUL characters) follow.

The fuzzer runs against its own ``aiostack up`` on its own database: it creates and mutates
hundreds of resources with an admin token, which the session-wide ``cloud`` other tests share must
not see. A pass never stops at the first bad response: it sends every example, then fails once with
each distinct problem (operation, status, server-side cause from the log, a curl to reproduce it).

Knobs (environment): ``AIOSTACK_FUZZ_SCALE`` multiplies the number of examples (default 1: about a
minute for the whole file); ``AIOSTACK_FUZZ_SEED`` explores other examples, reproducibly (default:
hypothesis' derandomized run, the same examples every time); ``AIOSTACK_FUZZ_VERBOSE=1`` prints
each operation's status counts (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.core.result import Ok

from tests.system.conftest import (
    RunningCloud,
    create_database,
    drop_database,
    start_cloud,
    stop_cloud,
)

PREFIX = "/identity/v3"
REQUEST_ID = "X-Openstack-Request-Id"
SCALE = float(os.environ.get("AIOSTACK_FUZZ_SCALE", "1"))
SEED = os.environ.get("AIOSTACK_FUZZ_SEED")
VERBOSE = bool(os.environ.get("AIOSTACK_FUZZ_VERBOSE"))
TIMEOUT_S = 30
PATH_PARAM = re.compile(r"\{([^}]+)\}")
# Operations that read the token to act on from X-Subject-Token (absent from the OpenAPI document).
SUBJECT_TOKEN_OPS = {f"{m} {PREFIX}/auth/tokens" for m in ("GET", "HEAD", "DELETE")}
GARBAGE_TOKENS: tuple[str | None, ...] = (
    None,  # no X-Auth-Token at all
    "",
    "garbage",
    "gAAAAABl" + "A" * 172,  # shaped like a Fernet token
    "x" * 4000,  # long, but within the 8 KiB header limit (see test_oversized_header)
    "t\u00f6k\u00e9n\u00ff",  # latin-1, not ASCII
    "REVOKED",  # replaced by a real token revoked before the pass
)
Operation = APIOperation[Any, Any, Any, Any]
SUPPRESSED = (
    HealthCheck.too_slow,  # every example is an HTTP round trip
    HealthCheck.filter_too_much,  # schemathesis filters what cannot be serialised
    HealthCheck.data_too_large,  # bodies generated from large schemas
    HealthCheck.large_base_example,
)


@dataclass(frozen=True)
class Pass:
    """One caller's fuzzing run: ``total`` examples spread over the operations, clamped per op."""

    name: str
    total: int
    least: int
    most: int

    def examples(self, operations: int) -> int:
        per_op = round(self.total * SCALE / max(1, operations))
        return max(round(self.least * SCALE), min(round(self.most * SCALE), per_op), 1)


ADMIN = Pass("admin", total=2400, least=5, most=20)
MEMBER = Pass("member", total=800, least=3, most=8)
ANONYMOUS = Pass("anonymous", total=500, least=2, most=5)


@dataclass
class Finding:
    """One distinct problem: the first request that showed it and how many did."""

    operation: str
    problems: tuple[str, ...]
    status: int
    request: str
    body: str
    cause: str
    count: int = 1

    def render(self) -> str:
        lines = [
            f"{self.operation} -> {self.status} ({self.count}x): {'; '.join(self.problems)}",
            f"    request:  {self.request}",
            f"    response: {self.body}",
        ]
        if self.cause:
            lines.append(f"    cause:    {self.cause}")
        return "\n".join(lines)


@dataclass
class Report:
    """Findings of one pass, deduplicated by (operation, problems, cause)."""

    log_path: Path
    findings: dict[tuple[str, tuple[str, ...], str], Finding] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    sent: int = 0

    def add(self, operation: str, problems: list[str], response: requests.Response) -> None:
        cause = server_cause(self.log_path, response.headers.get(REQUEST_ID, ""))
        key = (operation, tuple(problems), cause)
        if key in self.findings:
            self.findings[key].count += 1
            return
        body = response.text[:300] if response.request.method != "HEAD" else "(HEAD)"
        self.findings[key] = Finding(
            operation, tuple(problems), response.status_code, curl(response.request), body, cause
        )
        REPORTED.add(response.headers.get(REQUEST_ID, ""))

    def note(self, operation: str, problem: str) -> None:
        key = (operation, (problem,), "")
        self.findings.setdefault(key, Finding(operation, (problem,), 0, "-", "-", ""))

    def fail_if_any(self, title: str) -> None:
        if self.findings:
            pytest.fail(
                f"{title}: {len(self.findings)} distinct problem(s) in {self.sent} requests "
                f"(server log {self.log_path}):\n"
                + "\n".join(f.render() for f in self.findings.values()),
                pytrace=False,
            )


# Request ids of 5xx responses a test already reported (the teardown reports the others).
REPORTED: set[str] = set()


def server_cause(log_path: Path, request_id: str) -> str:
    """The exception the server logged for ``request_id``: its last line and innermost own frame."""
    if not request_id or not log_path.exists():
        return ""
    for line in log_path.read_text(errors="replace").splitlines():
        if request_id not in line or '"api.unhandled"' not in line:
            continue
        try:
            trace = str(json.loads(line).get("exception", "")).splitlines()
        except ValueError:
            return line[:300]
        frames = [t.strip() for t in trace if t.strip().startswith('File "') and "/cloud/" in t]
        where = frames[-1].replace('File "', "").replace('", line ', ":") if frames else ""
        return f"{trace[-1] if trace else '?'} at {where}"
    return ""


def curl(request: requests.PreparedRequest) -> str:
    """A shell command that sends ``request`` again (tokens replaced by ``$OS_TOKEN``)."""
    parts = ["curl", "-i", "-X", str(request.method), shlex.quote(str(request.url))]
    for name, value in request.headers.items():
        if name.lower() in ("x-auth-token", "x-subject-token") and len(value) > 100:
            value = "$OS_TOKEN"
        if name.lower() in ("user-agent", "accept-encoding", "connection", "content-length"):
            continue
        parts += ["-H", shlex.quote(f"{name}: {value!s}")]
    body = request.body
    if body:
        raw = body if isinstance(body, bytes) else str(body).encode()
        shown = raw[:300].decode("utf-8", "backslashreplace")
        suffix = f"...({len(raw)} bytes)" if len(raw) > 300 else ""
        parts += ["--data-binary", shlex.quote(shown) + suffix]
    return " ".join(parts)


def problems_of(response: requests.Response, *, needs_token: bool, anonymous: bool) -> list[str]:
    """What is wrong with ``response``; empty when nothing is."""
    found: list[str] = []
    status = response.status_code
    if status >= 500:
        found.append(f"server error {status}")
    if not response.headers.get(REQUEST_ID, "").startswith("req-"):
        found.append(f"no {REQUEST_ID} header")
    # Without a valid token only the gateway's checks that precede authentication may answer
    # otherwise: 400 for a URL it refuses outright (NUL characters). Any other status means a
    # handler ran for nobody.
    if anonymous and needs_token and status not in (400, 401):
        found.append(f"expected 401 without a valid token, got {status}")
    if status == 401 and "WWW-Authenticate" not in response.headers:
        found.append("401 without WWW-Authenticate")
    if 400 <= status < 600 and response.request.method != "HEAD":
        found += fault_problems(response)
    return found


def fault_problems(response: requests.Response) -> list[str]:
    """Problems with an error body: it must be Keystone's fault with the response's status."""
    try:
        body = response.json()
    except ValueError:
        return [f"error body is not JSON: {response.text[:80]!r}"]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"code", "title", "message"}:
        return [
            f"error body is not Keystone's {{'error': {{code, title, message}}}}: {body!r:.120}"
        ]
    found = []
    if error["code"] != response.status_code:
        found.append(f"error.code {error['code']!r} != status {response.status_code}")
    if not isinstance(error["title"], str) or not error["title"]:
        found.append("error.title is not a non-empty string")
    if not isinstance(error["message"], str):
        found.append("error.message is not a string")
    return found


# --- the cloud under test and its callers -----------------------------------------------------


@dataclass
class Fuzzed:
    """The running cloud, its OpenAPI document and the schemathesis schema of ``/identity``."""

    cloud: RunningCloud
    document: dict[str, Any]
    operations: list[Operation]
    http: requests.Session
    # Path parameter -> an id that exists, for each caller (see ``seed_resources``).
    ids: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cloud.url

    def has_route(self, method: str, path: str) -> bool:
        return method.lower() in self.document["paths"].get(path, {})

    def needs_token(self, op: Operation) -> bool:
        spec = self.document["paths"][op.path][op.method.lower()]
        return bool(spec.get("security"))

    def login(self, cloud_name: str) -> str:
        return str(self.cloud.sdk(cloud_name).session.get_token())

    def token_works(self, token: str) -> bool:
        headers = {"X-Auth-Token": token, "X-Subject-Token": token}
        reply = self.http.get(
            f"{self.url}{PREFIX}/auth/tokens?nocatalog", headers=headers, timeout=TIMEOUT_S
        )
        return reply.status_code == 200

    def derived_token(self, token: str) -> str:
        """A new token of the same user (token method): revoking it leaves ``token`` valid."""
        body: dict[str, Any] = {
            "auth": {"identity": {"methods": ["token"], "token": {"id": token}}}
        }
        reply = self.http.post(
            f"{self.url}{PREFIX}/auth/tokens?nocatalog", json=body, timeout=TIMEOUT_S
        )
        assert reply.status_code == 201, f"token method: {reply.status_code} {reply.text[:200]}"
        return reply.headers["X-Subject-Token"]

    def revoked_token(self, token: str) -> str:
        doomed = self.derived_token(token)
        headers = {"X-Auth-Token": token, "X-Subject-Token": doomed}
        reply = self.http.delete(f"{self.url}{PREFIX}/auth/tokens", headers=headers, timeout=30)
        assert reply.status_code == 204, f"revoke: {reply.status_code} {reply.text[:200]}"
        return doomed


@pytest.fixture(scope="module")
def fuzz_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    """A private aiostack: the fuzzer's junk and mutations stay out of the shared ``cloud``."""
    database = asyncio.run(create_database())
    proc, running = start_cloud(tmp_path_factory.mktemp("fuzz"), database)
    try:
        yield running
    finally:
        stop_cloud(proc)
        asyncio.run(drop_database(database))
    unreported = [
        line
        for line in running.log_path.read_text(errors="replace").splitlines()
        if '"api.unhandled"' in line and not any(rid and rid in line for rid in REPORTED)
    ]
    assert not unreported, "unreported server errors:\n" + "\n".join(unreported[:5])


def _created(fuzzed: Fuzzed, token: str, path: str, body: dict[str, Any], key: str) -> str | None:
    """POST ``body`` to ``path``; the new resource's ``key`` field (None if it is not possible)."""
    reply = fuzzed.http.post(
        f"{fuzzed.url}{PREFIX}{path}", json=body, headers={"X-Auth-Token": token}, timeout=30
    )
    if reply.status_code != 201:  # e.g. the operation has not landed yet: fuzz with made-up ids
        return None
    envelope = next(iter(reply.json().values()))
    return str(envelope[key])


def seed_resources(fuzzed: Fuzzed) -> None:
    """Throwaway resources whose ids some examples use as path parameters (random ids only 404).

    The admin fuzzes its own domain, project, user, group, roles, region, service, endpoint and
    credentials (never the bootstrap ones: disabling those would lock the fuzzer out). The member
    fuzzes the same, but with its own user, project, application credential and EC2 credential, so
    self-service operations get exercised.
    """
    token = fuzzed.login("aiostack-admin")
    tag = uuid.uuid4().hex[:8]
    ids: dict[str, str | None] = {}
    ids["domain_id"] = _created(fuzzed, token, "/domains", {"domain": {"name": f"fz-{tag}"}}, "id")
    default = {"name": f"fz-{tag}", "domain_id": "default"}
    ids["project_id"] = _created(fuzzed, token, "/projects", {"project": default}, "id")
    ids["user_id"] = _created(fuzzed, token, "/users", {"user": default}, "id")
    ids["group_id"] = _created(fuzzed, token, "/groups", {"group": default}, "id")
    ids["role_id"] = ids["prior_role_id"] = _created(
        fuzzed, token, "/roles", {"role": {"name": f"fz-{tag}"}}, "id"
    )
    ids["implied_role_id"] = _created(
        fuzzed, token, "/roles", {"role": {"name": f"fz-{tag}-implied"}}, "id"
    )
    ids["region_id"] = _created(fuzzed, token, "/regions", {"region": {"id": f"fz-{tag}"}}, "id")
    service = {"service": {"type": f"fz-{tag}", "name": f"fz-{tag}"}}
    ids["service_id"] = _created(fuzzed, token, "/services", service, "id")
    if ids["service_id"]:
        endpoint = {"interface": "public", "service_id": ids["service_id"], "url": "http://fz"}
        ids["endpoint_id"] = _created(fuzzed, token, "/endpoints", {"endpoint": endpoint}, "id")
    if ids["user_id"] and ids["project_id"]:
        owner = {"user_id": ids["user_id"], "project_id": ids["project_id"]}
        credential = owner | {"type": "totp", "blob": "fz"}
        ids["credential_id"] = _created(
            fuzzed, token, "/credentials", {"credential": credential}, "id"
        )
        ec2 = {"tenant_id": ids["project_id"]}
        ids["access"] = _created(
            fuzzed, token, f"/users/{ids['user_id']}/credentials/OS-EC2", ec2, "access"
        )
    conn = fuzzed.cloud.sdk("aiostack")
    access = conn.session.auth.get_access(conn.session)
    member = {"user_id": str(access.user_id), "project_id": str(access.project_id)}
    member_token = str(conn.session.get_token())
    own = f"/users/{member['user_id']}"
    app_cred = {"application_credential": {"name": f"fz-{tag}"}}
    ec2 = {"tenant_id": member["project_id"]}
    for name, path, body, key in (
        ("app_cred_id", f"{own}/application_credentials", app_cred, "id"),
        ("access", f"{own}/credentials/OS-EC2", ec2, "access"),
    ):
        value = _created(fuzzed, member_token, path, body, key)
        if value is not None:
            member[name] = value
    admin = {k: v for k, v in ids.items() if v is not None}
    fuzzed.ids = {"aiostack-admin": admin, "aiostack": admin | member}


@pytest.fixture(scope="module")
def fuzzed(fuzz_cloud: RunningCloud) -> Iterator[Fuzzed]:
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    loaded = schemathesis.openapi.from_url(f"{fuzz_cloud.url}/openapi.json", config=config)
    schema: BaseSchema = loaded.include(path_regex=r"^/identity(/|$)")
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise result.err()  # an operation of the document schemathesis cannot use
        operations.append(result.ok())
    document = requests.get(f"{fuzz_cloud.url}/openapi.json", timeout=TIMEOUT_S).json()
    assert operations, "no /identity operations in /openapi.json"
    with requests.Session() as http:
        yield Fuzzed(fuzz_cloud, document, operations, http)


# --- the passes -------------------------------------------------------------------------------


@dataclass
class Caller:
    """Who sends the fuzzed requests: a cloud in clouds.yaml, or nobody (``cloud_name`` None)."""

    cloud_name: str | None
    token: str | None = None

    def headers(self, fuzzed: Fuzzed, op: Operation, choice: str | None) -> dict[str, str]:
        """Auth headers of one case; ``choice`` is the drawn garbage token or subject kind."""
        headers: dict[str, str] = {}
        if self.token is not None:
            headers["X-Auth-Token"] = self.token
        elif choice is not None and choice.startswith("auth:"):
            headers["X-Auth-Token"] = choice[len("auth:") :]
        if op.label in SUBJECT_TOKEN_OPS and choice is not None and choice.startswith("subject:"):
            kind = choice[len("subject:") :]
            if kind == "valid" and self.token is not None:
                # Never the caller's own token for DELETE: that would revoke the fuzzer's token.
                own = op.method.upper() != "DELETE"
                headers["X-Subject-Token"] = self.token if own else fuzzed.derived_token(self.token)
            elif kind != "absent":
                headers["X-Subject-Token"] = kind
        return headers


def choices(caller: Caller, op: Operation, revoked: str) -> st.SearchStrategy[str | None]:
    """What each case adds to the generated request: a garbage token, an X-Subject-Token."""
    if caller.cloud_name is None:
        tokens = [
            None if t is None else f"auth:{revoked if t == 'REVOKED' else t}"
            for t in GARBAGE_TOKENS
        ]
        return st.sampled_from(tokens)
    if op.label in SUBJECT_TOKEN_OPS:
        kinds = ("valid", "valid", "absent", "garbage", "gAAAAABl" + "B" * 172, revoked)
        return st.sampled_from([f"subject:{k}" for k in kinds])
    return st.just(None)


def cases(fuzzed: Fuzzed, caller: Caller, op: Operation) -> st.SearchStrategy[Case[Any]]:
    """Valid and invalid requests, with made-up path parameters and with ones that exist."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [op.as_strategy(mode) for mode in modes]
    ids = fuzzed.ids.get(caller.cloud_name or "aiostack-admin", {})
    known = {name: ids[name] for name in PATH_PARAM.findall(op.path) if name in ids}
    if known:
        strategies += [op.as_strategy(mode, path_parameters=known) for mode in modes]
    return st.one_of(strategies)


def deletions_last(op: Operation) -> tuple[bool, int]:
    """Deletions last (the others should find the seeded resources), the deepest paths first."""
    deletes = op.method.upper() == "DELETE"
    return deletes, -op.path.count("/") if deletes else 0


def fuzz(fuzzed: Fuzzed, caller: Caller, run: Pass) -> Report:
    """Send ``run``'s examples of every operation as ``caller``; the findings."""
    report = Report(fuzzed.cloud.log_path)
    if caller.cloud_name is not None:
        caller.token = fuzzed.login(caller.cloud_name)
    revoked = fuzzed.revoked_token(fuzzed.login("aiostack-admin"))
    seed_resources(fuzzed)  # afresh: the previous pass may have deleted them
    examples = run.examples(len(fuzzed.operations))
    for op in sorted(fuzzed.operations, key=deletions_last):
        test = hypothesis_test(fuzzed, caller, op, report)
        test = given(case=cases(fuzzed, caller, op), choice=choices(caller, op, revoked))(test)
        test = settings(
            max_examples=examples,
            deadline=None,
            derandomize=SEED is None,
            database=None,
            phases=(Phase.explicit, Phase.generate),
            suppress_health_check=SUPPRESSED,
            print_blob=False,
        )(test)
        if SEED is not None:
            test = seed(int(SEED))(test)
        try:
            test()
        except Exception as exc:  # schemathesis could not generate for this operation
            report.note(op.label, f"fuzzer error: {type(exc).__name__}: {exc}"[:300])
        if caller.token is not None and not fuzzed.token_works(caller.token):
            report.note(op.label, "the caller's token stopped working after this operation")
            assert caller.cloud_name is not None
            caller.token = fuzzed.login(caller.cloud_name)
    histogram = ", ".join(f"{s}: {n}" for s, n in sorted(report.statuses.items()))
    print(
        f"\nfuzz {run.name}: {len(fuzzed.operations)} operations x {examples} examples, "
        f"{report.sent} requests ({histogram})"
    )
    if VERBOSE:
        for label, counts in report.by_operation.items():
            print(f"  {label}: {dict(sorted(counts.items()))}")
    return report


def hypothesis_test(
    fuzzed: Fuzzed, caller: Caller, op: Operation, report: Report
) -> Callable[[Case[Any], str | None], None]:
    """The body of one operation's property: send the case, record what is wrong with the answer."""
    anonymous = caller.cloud_name is None
    needs_token = fuzzed.needs_token(op)

    def send(case: Case[Any], choice: str | None) -> None:
        headers = caller.headers(fuzzed, op, choice)
        kwargs = case.as_transport_kwargs(base_url=fuzzed.url, headers=headers)
        report.sent += 1
        try:
            response = fuzzed.http.request(**kwargs, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            report.note(op.label, f"request failed: {type(exc).__name__}: {exc}"[:300])
            return
        report.statuses[response.status_code] += 1
        report.by_operation.setdefault(op.label, Counter())[response.status_code] += 1
        found = problems_of(response, needs_token=needs_token, anonymous=anonymous)
        if found:
            report.add(op.label, found, response)

    return send


def test_fuzz_as_admin(fuzzed: Fuzzed) -> None:
    fuzz(fuzzed, Caller("aiostack-admin"), ADMIN).fail_if_any("identity fuzzing as admin")


def test_fuzz_as_member(fuzzed: Fuzzed) -> None:
    fuzz(fuzzed, Caller("aiostack"), MEMBER).fail_if_any("identity fuzzing as member")


def test_fuzz_without_a_valid_token(fuzzed: Fuzzed) -> None:
    fuzz(fuzzed, Caller(None), ANONYMOUS).fail_if_any("identity fuzzing without a valid token")


# --- hand-written hostile bodies --------------------------------------------------------------


def nested(depth: int, open_: str, close: str, inner: str = "1") -> bytes:
    return (open_ * depth + inner + close * depth).encode()


@dataclass(frozen=True)
class Hostile:
    """A request body the gateway must refuse with ``status``."""

    name: str
    body: Callable[[str], bytes]  # from the target's envelope key ("user", "project", "auth")
    status: int
    content_type: str | None = "application/json"


def _with(value: str) -> Callable[[str], bytes]:
    """An otherwise plausible body whose ``name`` (or password) is ``value`` (raw JSON text)."""

    def body(key: str) -> bytes:
        if key == "auth":
            text = (
                '{"auth": {"identity": {"methods": ["password"], "password": {"user": '
                f'{{"name": {value}, "domain": {{"id": "default"}}, "password": {value}}}}}}}}}'
            )
        else:
            text = f'{{"{key}": {{"name": {value}, "domain_id": "default"}}}}'
        return text.encode()

    return body


HOSTILE = (
    Hostile("malformed JSON", lambda k: f'{{"{k}": {{"name": '.encode(), 400),
    Hostile("empty body", lambda k: b"", 400),
    Hostile(
        "non-UTF-8 bytes", lambda k: f'{{"{k}": {{"name": "\xff\xfe"}}}}'.encode("latin-1"), 400
    ),
    Hostile("JSON array", lambda k: f'[{{"{k}": {{"name": "x"}}}}]'.encode(), 400),
    Hostile("JSON string", lambda k: b'"just a string"', 400),
    Hostile("2 MB body", _with('"' + "a" * (2 * 1024 * 1024) + '"'), 413),
    Hostile("Content-Type text/plain", _with('"x"'), 415, "text/plain"),
    Hostile("no Content-Type", _with('"x"'), 415, None),
    Hostile("nested 1,000 arrays", lambda k: nested(1000, "[", "]"), 400),
    Hostile("nested 100,000 arrays", lambda k: nested(100_000, "[", "]"), 400),
    Hostile("nested 50,000 objects", lambda k: nested(50_000, '{"a":', "}"), 400),
    Hostile("nested name", _with(nested(5000, "[", "]").decode()), 400),
    Hostile("5,000-digit integer", _with("9" * 5000), 400),
    Hostile("4,000-digit integer", _with("9" * 4000), 400),
    Hostile("float overflow", _with("1e999"), 400),
    Hostile("NUL in a string", _with('"a\\u0000b"'), 400),
    Hostile("raw NUL byte", _with('"a\x00b"'), 400),
    Hostile("lone surrogate", _with('"\\ud800"'), 400),
)
TARGETS = (
    ("POST", "/auth/tokens", "auth"),
    ("POST", "/projects", "project"),
    ("POST", "/users", "user"),
    ("PATCH", "/users/{user_id}", "user"),
)


@pytest.fixture(scope="module")
def victim(fuzzed: Fuzzed) -> dict[str, str]:
    """Path parameters: a throwaway user to PATCH (a made-up id while POST /users is missing)."""
    token = fuzzed.login("aiostack-admin")
    body = {"user": {"name": f"fuzz-{uuid.uuid4().hex[:8]}", "domain_id": "default"}}
    reply = fuzzed.http.post(
        f"{fuzzed.url}{PREFIX}/users", json=body, headers={"X-Auth-Token": token}, timeout=30
    )
    user_id = reply.json()["user"]["id"] if reply.status_code == 201 else uuid.uuid4().hex
    return {"token": token, "user_id": user_id}


@pytest.mark.parametrize(
    ("method", "path", "key"), TARGETS, ids=[f"{m} {p}" for m, p, _ in TARGETS]
)
@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_body(
    fuzzed: Fuzzed, victim: dict[str, str], method: str, path: str, key: str, hostile: Hostile
) -> None:
    headers = {"X-Auth-Token": victim["token"]}
    if hostile.content_type is not None:
        headers["Content-Type"] = hostile.content_type
    url = f"{fuzzed.url}{PREFIX}{path.format(user_id=victim['user_id'])}"
    response = fuzzed.http.request(
        method, url, data=hostile.body(key), headers=headers, timeout=TIMEOUT_S
    )
    if response.status_code >= 500:
        REPORTED.add(response.headers.get(REQUEST_ID, ""))
    cause = server_cause(fuzzed.cloud.log_path, response.headers.get(REQUEST_ID, ""))
    found = problems_of(response, needs_token=False, anonymous=False)
    assert not found, f"{found}: {curl(response.request)} -> {response.text[:200]} {cause}"
    assert fuzzed.has_route(method, PREFIX + path), f"{method} {PREFIX}{path} is not served"
    assert response.status_code == hostile.status, (
        f"{method} {path} with {hostile.name}: expected {hostile.status}, "
        f"got {response.status_code}: {response.text[:200]} {cause}"
    )


def test_oversized_header(fuzzed: Fuzzed) -> None:
    """A header over aiohttp's 8 KiB field limit: refused by the HTTP parser, never a 5xx.

    The parser answers before the application runs, so that 400 carries neither a request id nor
    Keystone's error body (Apache in front of Keystone does the same); only the status is checked.
    """
    response = fuzzed.http.get(
        f"{fuzzed.url}{PREFIX}/auth/catalog", headers={"X-Auth-Token": "x" * 9000}, timeout=30
    )
    assert response.status_code in (400, 431), (response.status_code, response.text[:200])
