"""Nova microversion negotiation: header parsing, ``latest``, the 400 and 406 faults."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from cloud.api.errors import ApiError, nova_fault
from cloud.compute.api.microversion import (
    MAX_VERSION,
    MIN_VERSION,
    negotiate,
    parse,
    requested,
    text,
)


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def test_range_covers_the_flavor_and_keypair_milestones() -> None:
    assert MIN_VERSION == (2, 1)
    assert MAX_VERSION >= (2, 55)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2.1", (2, 1)), ("2.55", (2, 55)), (" 2.10 ", (2, 10)), ("latest", MAX_VERSION)],
)
def test_parse(value: str, expected: tuple[int, int]) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize("value", ["", "2", "2.", ".5", "2.01", "v2.1", "2.1.1", "two", "02.1"])
def test_parse_refuses_garbage(value: str) -> None:
    assert parse(value) is None


def test_requested_prefers_the_new_header_and_finds_compute_among_services() -> None:
    assert requested(headers()) is None
    assert requested(headers(("X-OpenStack-Nova-API-Version", "2.5"))) == "2.5"
    both = headers(
        ("OpenStack-API-Version", "volume 3.1, compute 2.7"),
        ("X-OpenStack-Nova-API-Version", "2.5"),
    )
    assert requested(both) == "2.7"
    assert requested(headers(("openstack-api-version", "COMPUTE latest"))) == "latest"
    # Another service's version only: the legacy header (or the default) decides.
    assert requested(headers(("OpenStack-API-Version", "volume 3.1"))) is None


def test_negotiate() -> None:
    assert negotiate(None) == MIN_VERSION
    assert negotiate("latest") == MAX_VERSION
    assert negotiate("2.3") == (2, 3)


def test_unsupported_version_is_406_in_novas_words() -> None:
    with pytest.raises(ApiError) as err:
        negotiate("2.999")
    assert err.value.status == 406
    assert nova_fault(err.value) == {
        "computeFault": {
            "code": 406,
            "message": "Version 2.999 is not supported by the API. Minimum is 2.1 and "
            f"maximum is {text(MAX_VERSION)}.",
        }
    }
    for low in ("2.0", "1.1", "3.0"):
        with pytest.raises(ApiError) as err:
            negotiate(low)
        assert err.value.status == 406


def test_garbage_is_400() -> None:
    with pytest.raises(ApiError) as err:
        negotiate("abc")
    assert err.value.status == 400 and "invalid format" in err.value.message
