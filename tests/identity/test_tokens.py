"""Fernet token payloads: round trips, size, and refusal of anything that is not our token."""

from __future__ import annotations

import base64
import contextlib
import os
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from cloud.identity.keys import KeyRepository, KeyRepositoryError
from cloud.identity.tokens import (
    MAX_TOKEN_LENGTH,
    InvalidToken,
    TokenFormatter,
    TokenPayload,
    new_audit_id,
)

NOW = datetime(2031, 5, 17, 12, 30, 45, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def hexid() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def repo(tmp_path: Path) -> KeyRepository:
    repository = KeyRepository(tmp_path / "fernet")
    repository.ensure()
    return repository


@pytest.fixture
def formatter(repo: KeyRepository) -> TokenFormatter:
    return TokenFormatter(repo)


def project_token_payload(**overrides: Any) -> TokenPayload:
    fields: dict[str, Any] = {
        "user_id": hexid(),
        "methods": ("password",),
        "issued_at": NOW,
        "expires_at": LATER,
        "audit_ids": (new_audit_id(),),
        "project_id": hexid(),
    }
    fields.update(overrides)
    return TokenPayload(**fields)


def encrypt_raw(repo: KeyRepository, plaintext: bytes) -> str:
    """A genuine Fernet token (right key) around an arbitrary plaintext."""
    return repo.fernet().encrypt(plaintext).decode("ascii").rstrip("=")


ROUND_TRIPS = {
    "unscoped": lambda: TokenPayload(hexid(), ("password",), NOW, LATER, (new_audit_id(),)),
    "project": project_token_payload,
    "domain-default": lambda: TokenPayload(
        hexid(), ("password",), NOW, LATER, (new_audit_id(),), domain_id="default"
    ),
    "domain-hex": lambda: TokenPayload(
        hexid(), ("password",), NOW, LATER, (new_audit_id(),), domain_id=hexid()
    ),
    "system-all": lambda: TokenPayload(
        hexid(), ("password",), NOW, LATER, (new_audit_id(),), system="all"
    ),
    "app-cred": lambda: project_token_payload(
        methods=("application_credential",), app_cred_id=hexid()
    ),
    "rescoped-two-audit-ids": lambda: project_token_payload(
        methods=("token", "password"), audit_ids=(new_audit_id(), new_audit_id())
    ),
    "non-hex-ids": lambda: TokenPayload(
        "ldap-user:jdoe",
        ("password",),
        NOW,
        LATER,
        (new_audit_id(),),
        project_id="Project-Not-A-UUID",
        app_cred_id="ABCDEF0123456789ABCDEF0123456789",  # upper-case hex stays a str
    ),
    "hyphenated-uuid-ids": lambda: project_token_payload(
        user_id=str(uuid.uuid4()), project_id=str(uuid.uuid4())
    ),
    "unknown-methods": lambda: project_token_payload(methods=("kerberos", "password")),
    "known-methods-out-of-order": lambda: project_token_payload(methods=("token", "password")),
    "repeated-method": lambda: project_token_payload(methods=("password", "password")),
    "all-known-methods": lambda: project_token_payload(
        methods=(
            "password",
            "token",
            "application_credential",
            "totp",
            "external",
            "mapped",
            "oauth1",
        )
    ),
    "expired": lambda: project_token_payload(
        issued_at=NOW - timedelta(days=2), expires_at=NOW - timedelta(days=1)
    ),
    "before-1970": lambda: project_token_payload(
        issued_at=datetime(1960, 1, 1, tzinfo=UTC), expires_at=datetime(1960, 1, 2, tzinfo=UTC)
    ),
    "non-ascii-ids": lambda: project_token_payload(user_id="ユーザー", project_id="projét"),
}


@pytest.mark.parametrize("make", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip(formatter: TokenFormatter, make: Any) -> None:
    original = make()
    token = formatter.issue(original)
    assert isinstance(token, str)
    parsed = formatter.parse(token)
    assert parsed == original
    assert parsed.methods == original.methods
    assert parsed.issued_at.tzinfo is UTC and parsed.expires_at.tzinfo is UTC


def test_project_scoped_password_token_is_short(formatter: TokenFormatter) -> None:
    token = formatter.issue(project_token_payload())
    assert len(token) < 200, len(token)
    assert "=" not in token  # padding stripped: safe in URLs as is


def test_padding_added_back_by_a_client_is_accepted(formatter: TokenFormatter) -> None:
    original = project_token_payload()
    token = formatter.issue(original)
    padded = token + "=" * (-len(token) % 4)
    assert formatter.parse(padded) == original


def test_times_are_utc_and_only_expiry_is_truncated_to_seconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    payload = project_token_payload(
        issued_at=datetime(2031, 5, 17, 14, 30, 45, 999_999, tzinfo=plus_two),
        expires_at=datetime(2031, 5, 17, 15, 30, 45, 1, tzinfo=plus_two),
    )
    assert payload.issued_at == NOW.replace(microsecond=999_999)
    assert payload.issued_at.tzinfo is UTC
    assert payload.expires_at == LATER


def test_now_with_microseconds_round_trips(formatter: TokenFormatter) -> None:
    now = datetime.now(UTC).replace(microsecond=123_456)
    original = project_token_payload(issued_at=now, expires_at=now + timedelta(hours=1))
    assert formatter.parse(formatter.issue(original)) == original


@pytest.mark.parametrize(
    "overrides",
    [
        {"project_id": "p", "domain_id": "default"},
        {"project_id": None, "domain_id": "default", "system": "all"},
        {"issued_at": datetime(2031, 1, 1)},  # naive
        {"expires_at": NOW - timedelta(seconds=1)},
        {"audit_ids": ()},
        {"audit_ids": (new_audit_id(), new_audit_id(), new_audit_id())},
        {"audit_ids": ("not-an-audit-id",)},
        {"audit_ids": (new_audit_id()[:-1] + "B",)},  # non-canonical last character
        {"methods": ()},
        {"methods": ("",)},
        {"user_id": ""},
        {"project_id": ""},
    ],
)
def test_invalid_payloads_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        project_token_payload(**overrides)


def test_new_audit_id() -> None:
    ids = {new_audit_id() for _ in range(100)}
    assert len(ids) == 100
    for audit_id in ids:
        assert len(audit_id) == 22
        assert len(base64.urlsafe_b64decode(audit_id + "==")) == 16
        assert set(audit_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_payload_audit_id_is_the_first() -> None:
    mine, parent = new_audit_id(), new_audit_id()
    assert project_token_payload(audit_ids=(mine, parent)).audit_id == mine


def test_a_huge_id_fails_at_issue_not_at_parse(formatter: TokenFormatter) -> None:
    with pytest.raises(ValueError, match="characters"):
        formatter.issue(project_token_payload(user_id="u" * 1000))


def _truncated(formatter: TokenFormatter) -> str:
    return formatter.issue(project_token_payload())[:-7]


def _non_canonical(formatter: TokenFormatter) -> str:
    # The last character of a token whose length is not a multiple of 4 has unused low bits; a
    # decoder ignores them, so changing them must not yield the same token under another name.
    token = formatter.issue(project_token_payload())
    assert len(token) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(token[-1]) ^ 1]
    return token[:-1] + last


def _tampered(formatter: TokenFormatter) -> str:
    token = formatter.issue(project_token_payload())
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def _with_whitespace(formatter: TokenFormatter) -> str:
    token = formatter.issue(project_token_payload())
    return token[:40] + " \n" + token[40:]


GARBAGE = {
    "empty": lambda f: "",
    "word": lambda f: "garbage",
    "fernet-prefix-only": lambda f: "gAAAAA",
    "truncated": _truncated,
    "tampered": _tampered,
    "non-canonical-base64": _non_canonical,
    "whitespace-inside": _with_whitespace,
    "base64-but-not-fernet": lambda f: base64.urlsafe_b64encode(os.urandom(150)).decode(),
    "base64-fernet-version-byte": lambda f: base64.urlsafe_b64encode(
        b"\x80" + os.urandom(120)
    ).decode(),
    "huge": lambda f: "gAAAAA" + "A" * 100_000,
    "just-over-the-limit": lambda f: "A" * (MAX_TOKEN_LENGTH + 1),
    "non-ascii": lambda f: "gAAAAABé" + "A" * 100,
    "non-ascii-digits": lambda f: "gAAAAAB" + "٣" * 100,
    "padding-inside": lambda f: "gAAAA=AB" + "A" * 100,
    "too-much-padding": lambda f: "gAAAAAB" + "A" * 99 + "===",
    "nul": lambda f: "gAAAAAB\x00" + "A" * 100,
    "not-a-str": lambda f: b"gAAAAAB",
    "none": lambda f: None,
}


@pytest.mark.parametrize("make", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_is_invalid(formatter: TokenFormatter, make: Any) -> None:
    with pytest.raises(InvalidToken) as info:
        formatter.parse(make(formatter))
    assert str(info.value) == "Could not recognize Fernet token"


def test_token_from_unrelated_keys_is_invalid(tmp_path: Path, formatter: TokenFormatter) -> None:
    other = KeyRepository(tmp_path / "other")
    other.ensure()
    token = TokenFormatter(other).issue(project_token_payload())
    with pytest.raises(InvalidToken):
        formatter.parse(token)


def test_missing_keys_are_a_server_error_not_an_invalid_token(tmp_path: Path) -> None:
    formatter = TokenFormatter(KeyRepository(tmp_path / "none"))
    with pytest.raises(KeyRepositoryError):
        formatter.parse("gAAAAAB" + "A" * 150)
    with pytest.raises(KeyRepositoryError):
        formatter.issue(project_token_payload())


def _good_fields() -> list[Any]:
    return [1, 1, uuid.uuid4().bytes, 1, 1_900_000_000, 1_900_003_600, [os.urandom(16)], b"p" * 16]


def _replace(index: int, value: Any) -> list[Any]:
    fields = [*_good_fields(), None]
    fields[index] = value
    return fields


def _pack_with_raw(index: int, raw: bytes) -> bytes:
    """The good payload with field ``index`` replaced by hand-made msgpack bytes."""
    encoded = [msgpack.packb(value) for value in [*_good_fields(), None]]
    encoded[index] = raw
    return b"\x99" + b"".join(encoded)  # 0x99: an array of nine


HOSTILE_PAYLOADS: dict[str, Any] = {
    "not-msgpack": b"\xc1\xc1\xc1",
    "plain-text": b"hello",
    "empty": b"",
    "truncated-msgpack": msgpack.packb([*_good_fields(), None])[:-3],
    "trailing-bytes": msgpack.packb([*_good_fields(), None]) + b"\x00",
    "a-map": msgpack.packb({"version": 1}),
    "an-int": msgpack.packb(1),
    "empty-list": msgpack.packb([]),
    "unknown-version": msgpack.packb(_replace(0, 2)),
    "version-as-bool": msgpack.packb(_replace(0, True)),
    "version-as-str": msgpack.packb(_replace(0, "1")),
    "too-few-fields": msgpack.packb(_good_fields()),
    "too-many-fields": msgpack.packb([*_good_fields(), None, None]),
    "unknown-scope-kind": msgpack.packb(_replace(1, 9)),
    "scope-kind-as-bool": msgpack.packb(_replace(1, True)),
    "unscoped-with-scope": msgpack.packb(_replace(1, 0)),
    "project-without-id": msgpack.packb(_replace(7, None)),
    "system-scope-as-bytes": msgpack.packb(_replace(1, 3)),
    "short-binary-id": msgpack.packb(_replace(2, b"\x01\x02")),
    "empty-str-id": msgpack.packb(_replace(2, "")),
    "id-as-int": msgpack.packb(_replace(2, 42)),
    "invalid-utf8-str": _pack_with_raw(2, b"\xa2\xff\xfe"),
    "methods-zero": msgpack.packb(_replace(3, 0)),
    "methods-unknown-bits": msgpack.packb(_replace(3, 1 << 40)),
    "methods-negative": msgpack.packb(_replace(3, -1)),
    "methods-empty-list": msgpack.packb(_replace(3, [])),
    "methods-list-of-ints": msgpack.packb(_replace(3, [1, 2])),
    "methods-bool": msgpack.packb(_replace(3, True)),
    "time-as-float": msgpack.packb(_replace(4, 1.5e9)),
    "time-as-bool": msgpack.packb(_replace(4, True)),
    "time-overflow": msgpack.packb(_replace(4, 2**63 - 1)),
    "time-underflow": msgpack.packb(_replace(4, -(2**63))),
    "time-ext": msgpack.packb(_replace(4, msgpack.Timestamp(1))),
    "expires-before-issued": msgpack.packb(_replace(5, 1)),
    "no-audit-ids": msgpack.packb(_replace(6, [])),
    "three-audit-ids": msgpack.packb(_replace(6, [os.urandom(16)] * 3)),
    "short-audit-id": msgpack.packb(_replace(6, [b"short"])),
    "audit-ids-not-a-list": msgpack.packb(_replace(6, os.urandom(16))),
    "app-cred-as-list": msgpack.packb(_replace(8, [1])),
    "ext-type": msgpack.packb(_replace(2, msgpack.ExtType(5, b"x"))),
    "deep-nesting": b"\x91" * 600 + b"\x01",  # as deep as still fits in MAX_TOKEN_LENGTH
    "huge-declared-array": b"\xdd\xff\xff\xff\xff",
    "huge-declared-str": b"\xdb\xff\xff\xff\xff",
}


@pytest.mark.parametrize("plaintext", HOSTILE_PAYLOADS.values(), ids=HOSTILE_PAYLOADS.keys())
def test_hostile_payload_under_a_valid_key_is_invalid(
    repo: KeyRepository, formatter: TokenFormatter, plaintext: bytes
) -> None:
    with pytest.raises(InvalidToken, match="Could not recognize Fernet token"):
        formatter.parse(encrypt_raw(repo, plaintext))


def test_the_good_fields_used_above_do_parse(
    repo: KeyRepository, formatter: TokenFormatter
) -> None:
    # Guards the table above: each entry must fail because of its one change, not anyway.
    parsed = formatter.parse(encrypt_raw(repo, msgpack.packb([*_good_fields(), None])))
    assert parsed.methods == ("password",)
    assert parsed.project_id == (b"p" * 16).hex()
    system = formatter.parse(encrypt_raw(repo, msgpack.packb([*_replace(1, 3)[:7], "all", None])))
    assert system.system == "all"


def test_random_plaintexts_never_escape_as_other_errors(
    repo: KeyRepository, formatter: TokenFormatter
) -> None:
    rng = random.Random(1234)
    good = msgpack.packb([*_good_fields(), None])
    for _ in range(500):
        if rng.random() < 0.5:
            plaintext = rng.randbytes(rng.randrange(0, 120))
        else:  # mutate a valid payload: flip, drop or insert bytes
            data = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                position = rng.randrange(len(data))
                action = rng.randrange(3)
                if action == 0:
                    data[position] ^= 1 << rng.randrange(8)
                elif action == 1:
                    del data[position]
                else:
                    data.insert(position, rng.randrange(256))
            plaintext = bytes(data)
        with contextlib.suppress(InvalidToken):
            formatter.parse(encrypt_raw(repo, plaintext))
