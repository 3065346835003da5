"""Keystone-compatible Fernet tokens: a small msgpack payload, encrypted and signed with Fernet.

A token carries everything needed to validate it (who, how, scope, when, audit ids), so no token
table exists; revocation works on audit ids and user/project ids elsewhere.

Payload, version 1, is a msgpack array of nine items::

    [1, scope_kind, user_id, methods, issued_at, expires_at, audit_ids, scope_id, app_cred_id]

- ``scope_kind``: 0 unscoped (``scope_id`` nil), 1 project, 2 domain, 3 system.
- ids: 16 raw bytes when the id is 32 lowercase hex digits (a ``uuid4().hex``), otherwise a str
  (the ``default`` domain, ids from LDAP or other backends). ``app_cred_id`` may be nil.
- ``methods``: an int bitmask over ``_METHODS`` when every method is known and listed in that
  order without repeats, otherwise an array of str, so any methods tuple comes back unchanged.
- times: integer seconds since the epoch, UTC.
- ``audit_ids``: one or two 16-byte strings (this token's, then the one it was made from).

The Fernet token's base64 padding is stripped, as Keystone does, so the token is URL-safe.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import msgpack  # type: ignore[import-untyped]
from cryptography import fernet

from cloud.identity.keys import KeyRepository

PAYLOAD_VERSION = 1
MAX_TOKEN_LENGTH = 1024

# Bit i stands for _METHODS[i]. Tokens in circulation depend on this order: only ever append.
_METHODS = (
    "password",
    "token",
    "application_credential",
    "totp",
    "external",
    "mapped",
    "oauth1",
)
_METHOD_BIT = {name: 1 << i for i, name in enumerate(_METHODS)}
_ALL_METHOD_BITS = (1 << len(_METHODS)) - 1

_UNSCOPED, _PROJECT, _DOMAIN, _SYSTEM = 0, 1, 2, 3

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_AUDIT_ID_BYTES = 16

_UNRECOGNIZED = "Could not recognize Fernet token"


class InvalidToken(Exception):
    """The token is not one of ours: malformed, truncated, signed with an unknown key or carrying
    an unknown payload version. The message is safe to return to the client; the cause, if any,
    is chained for the logs."""

    def __init__(self, message: str = _UNRECOGNIZED) -> None:
        super().__init__(message)


def new_audit_id() -> str:
    """A fresh audit id: 16 random bytes, urlsafe base64 without padding (22 characters)."""
    return _encode_audit_id(secrets.token_bytes(_AUDIT_ID_BYTES))


def _encode_audit_id(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_audit_id(audit_id: str) -> bytes:
    """The 16 bytes behind an audit id; ValueError unless it is in the canonical 22-char form
    (a non-canonical spelling would not survive the round trip through the token)."""
    if not isinstance(audit_id, str) or len(audit_id) != 22 or not audit_id.isascii():
        raise ValueError(f"not an audit id: {audit_id!r}")
    try:
        raw = base64.urlsafe_b64decode(audit_id + "==")
    except binascii.Error as exc:
        raise ValueError(f"not an audit id: {audit_id!r}") from exc
    if len(raw) != _AUDIT_ID_BYTES or _encode_audit_id(raw) != audit_id:
        raise ValueError(f"not an audit id: {audit_id!r}")
    return raw


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _utc_second(value: datetime, name: str) -> datetime:
    return _utc(value, name).replace(microsecond=0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _check_id(value: object, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty str")


@dataclass(frozen=True, slots=True)
class TokenPayload:
    """What a token says. Exactly one of project_id, domain_id and system may be set; none set
    means an unscoped token. Times are normalised to UTC (expires_at to whole seconds) as the
    token stores them, so a payload compares equal to its parsed token."""

    user_id: str
    methods: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    audit_ids: tuple[str, ...]
    project_id: str | None = None
    domain_id: str | None = None
    system: str | None = None
    app_cred_id: str | None = None

    def __post_init__(self) -> None:
        _check_id(self.user_id, "user_id", optional=False)
        # Accept any iterable for the tuple fields, but store tuples so payloads stay hashable.
        methods = tuple(self.methods)
        if not methods or not all(isinstance(m, str) and m for m in methods):
            raise ValueError("methods must be a non-empty tuple of non-empty str")
        object.__setattr__(self, "methods", methods)
        # issued_at keeps microseconds: a revocation at 12:00:00.4 must not kill a token
        # issued at 12:00:00.7 (re-login right after a password change).
        issued_at = _utc(self.issued_at, "issued_at")
        expires_at = _utc_second(self.expires_at, "expires_at")
        if expires_at < issued_at:
            raise ValueError("expires_at is before issued_at")
        object.__setattr__(self, "issued_at", issued_at)
        object.__setattr__(self, "expires_at", expires_at)
        audit_ids = tuple(self.audit_ids)
        if not 1 <= len(audit_ids) <= 2:
            raise ValueError("audit_ids must hold this token's audit id and at most its parent's")
        for audit_id in audit_ids:
            _decode_audit_id(audit_id)
        object.__setattr__(self, "audit_ids", audit_ids)
        for name in ("project_id", "domain_id", "system", "app_cred_id"):
            _check_id(getattr(self, name), name, optional=True)
        scopes = [s for s in (self.project_id, self.domain_id, self.system) if s is not None]
        if len(scopes) > 1:
            raise ValueError("a token is scoped to at most one of project, domain and system")

    @property
    def audit_id(self) -> str:
        """This token's own audit id."""
        return self.audit_ids[0]


# -- encoding ----------------------------------------------------------------------------------


def _pack_id(value: str) -> str | bytes:
    return bytes.fromhex(value) if _HEX_ID.fullmatch(value) else value


def _pack_methods(methods: tuple[str, ...]) -> int | list[str]:
    # The bitmask forgets order and repeats, so use it only when nothing would be forgotten:
    # every method known, in _METHODS order, none twice.
    mask = previous = 0
    for method in methods:
        bit = _METHOD_BIT.get(method)
        if bit is None or bit <= previous:
            return list(methods)
        mask |= bit
        previous = bit
    return mask


def _encode(payload: TokenPayload) -> bytes:
    if payload.project_id is not None:
        kind, scope_id = _PROJECT, _pack_id(payload.project_id)
    elif payload.domain_id is not None:
        kind, scope_id = _DOMAIN, _pack_id(payload.domain_id)
    elif payload.system is not None:
        kind, scope_id = _SYSTEM, payload.system
    else:
        kind, scope_id = _UNSCOPED, None
    data = [
        PAYLOAD_VERSION,
        kind,
        _pack_id(payload.user_id),
        _pack_methods(payload.methods),
        (payload.issued_at - _EPOCH) // _MICROSECOND,
        int(payload.expires_at.timestamp()),
        [_decode_audit_id(a) for a in payload.audit_ids],
        scope_id,
        None if payload.app_cred_id is None else _pack_id(payload.app_cred_id),
    ]
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


# -- decoding: every check raises ValueError, turned into InvalidToken by parse() ----------------


def _is_int(value: object) -> TypeGuard[int]:
    # msgpack booleans come back as bool, which is an int subclass.
    return type(value) is int


def _unpack_id(value: object) -> str:
    if isinstance(value, bytes) and len(value) == 16:
        return value.hex()
    if isinstance(value, str) and value:
        return value
    raise ValueError("bad id")


def _unpack_methods(value: object) -> tuple[str, ...]:
    if _is_int(value):
        if not 0 < value <= _ALL_METHOD_BITS:
            raise ValueError("bad methods bitmask")
        return tuple(m for m in _METHODS if value & _METHOD_BIT[m])
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return tuple(value)
    raise ValueError("bad methods")


def _unpack_time(value: object) -> datetime:
    if not _is_int(value):
        raise ValueError("bad time")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError("time out of range") from exc


def _unpack_micros(value: object) -> datetime:
    if not _is_int(value):
        raise ValueError("bad time")
    try:
        return _EPOCH + value * _MICROSECOND
    except OverflowError as exc:
        raise ValueError("time out of range") from exc


def _unpack_audit_ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(a, bytes) and len(a) == _AUDIT_ID_BYTES for a in value
    ):
        raise ValueError("bad audit ids")
    return tuple(_encode_audit_id(a) for a in value)


def _decode(packed: bytes) -> TokenPayload:
    data: Any = msgpack.unpackb(packed, raw=False, use_list=True, strict_map_key=True)
    if not isinstance(data, list) or not data or not _is_int(data[0]):
        raise ValueError("not a token payload")
    if data[0] != PAYLOAD_VERSION:
        raise ValueError(f"unknown payload version {data[0]}")
    if len(data) != 9:
        raise ValueError(f"version {PAYLOAD_VERSION} payload with {len(data)} fields, not 9")
    _, kind, user_id, methods, issued_at, expires_at, audit_ids, scope_id, app_cred_id = data
    project_id = domain_id = system = None
    if not _is_int(kind):
        raise ValueError("bad scope kind")
    if kind == _UNSCOPED:
        if scope_id is not None:
            raise ValueError("unscoped token with a scope")
    elif kind == _PROJECT:
        project_id = _unpack_id(scope_id)
    elif kind == _DOMAIN:
        domain_id = _unpack_id(scope_id)
    elif kind == _SYSTEM:
        if not isinstance(scope_id, str):
            raise ValueError("bad system scope")
        system = scope_id
    else:
        raise ValueError("unknown scope kind")
    # TokenPayload re-validates the rest (non-empty methods, audit id count, expiry order).
    return TokenPayload(
        user_id=_unpack_id(user_id),
        methods=_unpack_methods(methods),
        issued_at=_unpack_micros(issued_at),
        expires_at=_unpack_time(expires_at),
        audit_ids=_unpack_audit_ids(audit_ids),
        project_id=project_id,
        domain_id=domain_id,
        system=system,
        app_cred_id=None if app_cred_id is None else _unpack_id(app_cred_id),
    )


class TokenFormatter:
    """Turns payloads into Fernet tokens and back, with the keys of a KeyRepository."""

    def __init__(self, keys: KeyRepository) -> None:
        self._keys = keys

    def issue(self, payload: TokenPayload) -> str:
        """The token for ``payload``, encrypted with the primary key."""
        token = self._keys.fernet().encrypt(_encode(payload)).decode("ascii").rstrip("=")
        if len(token) > MAX_TOKEN_LENGTH:
            # parse() would refuse it; fail here, where the cause (a huge id) is visible.
            raise ValueError(f"token would be {len(token)} characters, over {MAX_TOKEN_LENGTH}")
        return token

    def parse(self, token: str) -> TokenPayload:
        """The payload of ``token``, which any active key may have signed.

        Raises InvalidToken for anything that is not a well-formed token of ours. Does not check
        ``expires_at``: callers compare it with their own clock. A KeyRepositoryError (no keys)
        passes through, since that is the server's fault, not the token's.
        """
        # Cheap checks before any crypto, so junk costs next to nothing.
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise InvalidToken()
        if not _TOKEN_CHARS.fullmatch(token):
            # The base64 decoder skips characters outside the alphabet; refuse them so that
            # different strings never pass as the same token.
            raise InvalidToken()
        multi = self._keys.fernet()
        stripped = token.rstrip("=")
        try:
            raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
            canonical = base64.urlsafe_b64encode(raw)
            # Unused low bits in the last character are ignored by the decoder; same reason.
            if canonical.rstrip(b"=").decode("ascii") != stripped:
                raise InvalidToken()
            plaintext = multi.decrypt(canonical, ttl=None)
            return _decode(plaintext)
        except InvalidToken:
            raise
        except (
            fernet.InvalidToken,
            msgpack.UnpackException,
            ValueError,  # also binascii.Error, UnicodeDecodeError and msgpack's format errors
            TypeError,
            OverflowError,
        ) as exc:
            raise InvalidToken() from exc
