"""The wire contract: registry, JSON round trip, decode errors, committed fingerprints."""

from __future__ import annotations

import copy
from typing import Literal

import pytest

import schemas
from schemas import DecodeError, Envelope, Event, decode, encode
from schemas.fingerprints import committed, current, fingerprint_schema
from schemas.system import ServiceMarkedDown
from tests.messages import Pinged


def test_round_trip_is_typed_and_exact() -> None:
    sent = Pinged(stream="s", n=3)
    got = decode("test.pinged", 1, encode(sent))
    assert isinstance(got, Pinged) and got == sent


def test_unknown_fields_are_tolerated_within_a_version() -> None:
    got = decode("test.pinged", 1, b'{"n": 1, "added_later": true}')
    assert got == Pinged(n=1)


@pytest.mark.parametrize(
    ("kind", "v", "body", "reason"),
    [
        ("test.pinged", 1, b"{oops", "invalid_json"),
        ("test.pinged", 1, b"\xff\xfe", "invalid_json"),
        ("test.nothing", 1, b"{}", "unknown_kind"),
        ("test.pinged", 2, b"{}", "unknown_kind"),
        ("test.pinged", 1, b'{"n": "many"}', "schema_violation"),
        ("test.pinged", 1, b"[1]", "schema_violation"),
        ("test.pinged", 1, b'{"kind": "test.bump", "n": 1}', "schema_violation"),
    ],
)
def test_bad_bodies_say_why(kind: str, v: int, body: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(kind, v, body)
    assert caught.value.reason == reason


def test_a_kind_and_version_can_be_claimed_once() -> None:
    with pytest.raises(ValueError, match="already"):

        class Impostor(Event):
            kind: Literal["test.pinged"] = "test.pinged"
            v: Literal[1] = 1


def test_kinds_must_be_dotted_lowercase() -> None:
    with pytest.raises(ValueError, match="dotted lowercase"):

        class Bad(Event):
            kind: Literal["NoDots"] = "NoDots"
            v: Literal[1] = 1


def test_envelope_reply_carries_correlation_and_causation() -> None:
    first = Envelope.first(Pinged(n=1), "a")
    second = first.reply(Pinged(n=2), "b")
    assert second.correlation_id == first.id and second.causation_id == first.id
    assert second.id != first.id


def test_every_message_has_a_committed_fingerprint_that_matches() -> None:
    """Changing a message's fields needs a new ``v``; a new message needs
    ``python -m schemas.fingerprints --write``."""
    assert schemas.system is not None
    now, recorded = current(), committed()
    missing = sorted(set(now) - set(recorded))
    assert not missing, f"new messages without a committed fingerprint: {missing}"
    changed = sorted(k for k in now if recorded[k] != now[k])
    assert not changed, f"messages changed without a new version: {changed}"


def test_fingerprint_sees_wire_changes_and_ignores_prose() -> None:
    schema = ServiceMarkedDown.model_json_schema()
    base = fingerprint_schema(schema)
    reworded = copy.deepcopy(schema)
    reworded["description"] = "new words"
    reworded["properties"]["host"]["title"] = "Node"
    assert fingerprint_schema(reworded) == base
    retyped = copy.deepcopy(schema)
    retyped["properties"]["window_s"]["type"] = "integer"
    assert fingerprint_schema(retyped) != base
    grown = copy.deepcopy(schema)
    grown["properties"]["extra"] = {"type": "string"}
    assert fingerprint_schema(grown) != base
