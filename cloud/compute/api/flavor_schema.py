"""Nova's flavor body schema, checked by hand: what ``POST``/``PUT /flavors`` accept.

Integers may come as digit strings (Nova's ``flavor_param_positive``), ``is_public`` as a lenient
boolean, ``rxtx_factor`` as a number or numeric string; unknown fields are refused. Errors are 400s
worded like Nova's JSON schema validation.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from cloud.api.errors import ApiError

MAX_INT = 2147483647
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789. _-")
Flavor = dict[str, Any]


def invalid(field: str, value: Any, reason: str) -> ApiError:
    """400 in the words of Nova's schema validation."""
    return ApiError(400, f"Invalid input for field/attribute {field}. Value: {value}. {reason}")


def _int(body: Mapping[str, Any], key: str, minimum: int, default: int | None = None) -> int:
    if key not in body:
        if default is None:
            raise invalid("flavor", dict(body), f"'{key}' is a required property")
        return default
    value = body[key]
    if isinstance(value, str) and value.isdigit() and value.isascii():
        number = int(value) if len(value) <= 20 else MAX_INT + 1
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise invalid(key, value, f"{value!r} is not of type 'integer', 'string'")
    if number < minimum:
        raise invalid(key, value, f"{value} is less than the minimum of {minimum}")
    if number > MAX_INT:
        raise invalid(key, value, f"{value} is greater than the maximum of {MAX_INT}")
    return number


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "1", "yes", "on", "t", "y"):
            return True
        if lowered in ("false", "0", "no", "off", "f", "n"):
            return False
    raise invalid(field, value, f"{value!r} is not one of the boolean values")


def _rxtx(value: Any) -> float:
    number: float
    if isinstance(value, int) and not isinstance(value, bool) and value > 2**128:
        number = float("inf")  # out of range below; float() would overflow
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        if re.fullmatch(r"[0-9]{1,40}(\.[0-9]{1,40})?", value) is None:
            raise invalid("rxtx_factor", value, f"{value!r} does not match '^[0-9]+(\\.[0-9]+)?$'")
        number = float(value)
    else:
        raise invalid("rxtx_factor", value, f"{value!r} is not of type 'number', 'string'")
    if not 0 < number <= 3.40282e38:
        raise invalid("rxtx_factor", value, f"{value} is not in the range (0, 3.40282e+38]")
    return number


def check_description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("description", value, f"{value!r} is not of type 'string', 'null'")
    if len(value) > 65535 or not all(c.isprintable() or c in "\n\r\t" for c in value):
        raise invalid("description", value, "Invalid description: too long or not printable")
    return value


def check_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str):
        raise invalid(field, value, f"{value!r} is not of type 'string'")
    if not 1 <= len(value) <= 255:
        raise invalid(field, value, f"{value!r} length must be between 1 and 255")
    if value != value.strip() or not value.isprintable():
        raise invalid(field, value, f"{value!r} does not match 'name'")
    return value


def parse_create(body: Any, ver: tuple[int, int]) -> Flavor:
    """The new flavor's fields from a create body; 400 as Nova's schema answers."""
    if not isinstance(body, dict):
        raise invalid("flavor", body, f"{body!r} is not of type 'object'")
    known = {"name", "id", "ram", "vcpus", "disk", "OS-FLV-EXT-DATA:ephemeral", "swap"}
    known |= {"rxtx_factor", "os-flavor-access:is_public"}
    if ver >= (2, 55):
        known.add("description")
    extra = sorted(set(body) - known)
    if extra:
        names = ", ".join(repr(k) for k in extra)
        raise invalid("flavor", body, f"Additional properties are not allowed ({names} unexpected)")
    if "name" not in body:
        raise invalid("flavor", body, "'name' is a required property")
    flavor_id = body.get("id")
    if flavor_id is None:
        flavor_id = str(uuid.uuid4())
    elif not isinstance(flavor_id, str):
        raise invalid("id", flavor_id, f"{flavor_id!r} is not of type 'string', 'null'")
    elif not (
        1 <= len(flavor_id) <= 255
        and set(flavor_id) <= _ID_CHARS
        and flavor_id.strip(" ") == flavor_id
    ):
        raise invalid(
            "id", flavor_id, f"{flavor_id!r} does not match '^(?! )[a-zA-Z0-9. _-]+(?<! )$'"
        )
    return {
        "id": flavor_id,
        "name": check_name(body["name"]),
        "ram": _int(body, "ram", 1),
        "vcpus": _int(body, "vcpus", 1),
        "disk": _int(body, "disk", 0),
        "ephemeral": _int(body, "OS-FLV-EXT-DATA:ephemeral", 0, 0),
        "swap": _int(body, "swap", 0, 0),
        "rxtx_factor": _rxtx(body["rxtx_factor"]) if "rxtx_factor" in body else 1.0,
        "is_public": _bool(body.get("os-flavor-access:is_public", True), "is_public"),
        "description": check_description(body.get("description")),
    }
