"""JSON round-trip of messages, with the three ways an inbound body can be bad told apart."""

from __future__ import annotations

import json

from pydantic import ValidationError

from schemas.base import REGISTRY, Message, UnknownMessage


class DecodeError(ValueError):
    """An inbound message that can never be handled; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()


def decode(kind: str, v: int, body: bytes) -> Message:
    """Parse ``body`` as the registered class for (kind, v).

    Raises ``DecodeError`` with reason ``invalid_json``, ``unknown_kind`` or ``schema_violation``.
    """
    try:
        cls = REGISTRY.lookup(kind, v)
    except UnknownMessage as exc:
        raise DecodeError("unknown_kind", str(exc)) from None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise DecodeError("schema_violation", "body is not a JSON object")
    # The envelope is authoritative for kind and v; a body that disagrees is malformed.
    if data.get("kind", kind) != kind or data.get("v", v) != v:
        raise DecodeError("schema_violation", "body kind/v disagree with the envelope")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise DecodeError("schema_violation", errors) from None
