"""The boot request (``POST /servers``): its body, and the checks Nova's schema makes per microversion.

``networks``: this cloud has no networking service yet. From 2.37 the field is required and must
be ``"auto"`` or ``"none"`` (or a list); before 2.37 it is optional and may only be a list. Both
``"auto"`` and ``"none"`` boot a server without addresses (the row keeps which one was asked, so
a later networking service can attach the ``auto`` ones); a list of networks or ports is a 400,
since there is nothing to attach it to.

``os:scheduler_hints`` are kept as given (the scheduler reads them from the row) once their
well-known keys have the types Nova's schema allows; other keys pass through, as in Nova.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.errors import ApiError
from cloud.compute.api.server_tags import check_tag

Version = tuple[int, int]
MAX_TAGS = 50

# Fields of the ``server`` object that exist only from a microversion on (400 below it).
FIELD_SINCE: dict[str, Version] = {
    "description": (2, 19),
    "tags": (2, 52),
    "trusted_image_certificates": (2, 63),
    "host": (2, 74),
    "hypervisor_hostname": (2, 74),
    "hostname": (2, 90),
}
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")  # Nova's valid_description_regex, roughly
_HOSTNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$")
_CIDR = re.compile(r"^/[0-9a-f.:]+$")


class ServerCreate(BaseModel):
    """The ``server`` object of a boot request."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=255)
    imageRef: str = ""
    flavorRef: str = Field(min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict)
    key_name: str | None = None
    user_data: str | None = Field(default=None, max_length=65535)
    availability_zone: str | None = None
    min_count: int = Field(default=1, ge=1)
    max_count: int = Field(default=1, ge=1)
    networks: Literal["none", "auto"] | list[dict[str, Any]] | None = None
    security_groups: list[dict[str, Any]] | None = None
    adminPass: str | None = None
    accessIPv4: str | None = None
    accessIPv6: str | None = None
    config_drive: bool | str | None = None
    description: str | None = Field(default=None, max_length=255)
    tags: list[str] | None = Field(default=None, max_length=MAX_TAGS)
    block_device_mapping_v2: list[dict[str, Any]] | None = None
    return_reservation_id: bool | None = None
    hostname: str | None = None
    trusted_image_certificates: list[str] | None = None
    host: str | None = None
    hypervisor_hostname: str | None = None
    disk_config: Literal["AUTO", "MANUAL"] | None = Field(default=None, alias="OS-DCF:diskConfig")


class ServerCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    server: ServerCreate
    # Nova takes the hints under either name (openstacksdk sends the extension's).
    scheduler_hints: dict[str, Any] | None = Field(default=None, alias="os:scheduler_hints")
    sch_hnt_hints: dict[str, Any] | None = Field(default=None, alias="OS-SCH-HNT:scheduler_hints")

    def hints(self) -> dict[str, Any] | None:
        if self.scheduler_hints is not None and self.sch_hnt_hints is not None:
            raise ApiError(400, "Give os:scheduler_hints or OS-SCH-HNT:scheduler_hints, not both.")
        return self.scheduler_hints if self.scheduler_hints is not None else self.sch_hnt_hints


def check(spec: ServerCreate, ver: Version) -> None:
    """The per-microversion rules of Nova's create schema beyond the body model's."""
    given = spec.model_fields_set
    for name, since in FIELD_SINCE.items():
        if name in given and ver < since:
            raise ApiError(
                400,
                "Invalid input for field/attribute server. Value: ... Additional properties are "
                f"not allowed ('{name}' was unexpected)",
            )
    if spec.min_count > spec.max_count:
        raise ApiError(400, "min_count must be <= max_count")
    if spec.description is not None:
        check_description(spec.description)
    for tag in spec.tags or []:
        check_tag(tag)
    if spec.hostname is not None:
        check_hostname(spec.hostname)
        if spec.max_count > 1:
            raise ApiError(400, "Cannot set the hostname when creating multiple servers.")
    if spec.trusted_image_certificates or spec.host or spec.hypervisor_hostname:
        raise ApiError(400, "Trusted certificates and requested hosts are not supported.")


def check_description(description: str) -> None:
    if not _PRINTABLE.match(description):
        raise ApiError(400, "Invalid input for field/attribute description: not printable.")


def check_hostname(hostname: str | None) -> None:
    """Nova's 2.90 hostname: 2-63 letters, digits, ``.``, ``_``, ``-``, alphanumeric at the ends."""
    if hostname is None or not (2 <= len(hostname) <= 63 and _HOSTNAME.match(hostname)):
        raise ApiError(400, f"Invalid input for field/attribute hostname. Value: {hostname}.")


def networks(spec: ServerCreate, ver: Version) -> str | None:
    """What the boot asked of networking: ``auto``, ``none`` or None (not asked, before 2.37)."""
    value = spec.networks
    if ver >= (2, 37):
        if value is None:
            raise ApiError(
                400,
                "Invalid input for field/attribute server. Value: ... 'networks' is a required "
                "property",
            )
    elif isinstance(value, str):
        raise ApiError(400, f"Invalid input for field/attribute networks. Value: {value}.")
    if isinstance(value, list):
        if not value:
            return None
        raise ApiError(
            400,
            "Networking is not available in this cloud yet: boot with networks 'none' or 'auto' "
            "(no addresses), not with a list of networks or ports.",
        )
    return value


def _uuid(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid input for field/attribute {name}. Value: {value!r}.")
    try:
        uuid.UUID(value)
    except ValueError:
        raise ApiError(
            400,
            f"Invalid input for field/attribute {name}. Value: {value}. '{value}' is not a 'uuid'",
        ) from None


def scheduler_hints(hints: dict[str, Any] | None) -> dict[str, Any]:
    """``os:scheduler_hints`` checked as Nova's schema checks them (its known keys only)."""
    hints = dict(hints or {})
    if "group" in hints:
        _uuid("group", hints["group"])
    for name in ("same_host", "different_host"):
        if name in hints:
            value = hints[name]
            for item in value if isinstance(value, list) else [value]:
                _uuid(name, item)
    if "query" in hints and not isinstance(hints["query"], str | dict):
        raise ApiError(400, "Invalid input for field/attribute query: a string or an object.")
    if "target_cell" in hints and not (
        isinstance(hints["target_cell"], str) and 1 <= len(hints["target_cell"]) <= 255
    ):
        raise ApiError(400, "Invalid input for field/attribute target_cell.")
    if "different_cell" in hints:
        cells = hints["different_cell"]
        if not isinstance(cells, str | list) or (
            isinstance(cells, list) and not all(isinstance(c, str) for c in cells)
        ):
            raise ApiError(400, "Invalid input for field/attribute different_cell.")
    if "build_near_host_ip" in hints:
        try:
            ipaddress.ip_address(hints["build_near_host_ip"])
        except (TypeError, ValueError):
            raise ApiError(400, "Invalid input for field/attribute build_near_host_ip.") from None
    if "cidr" in hints and not (isinstance(hints["cidr"], str) and _CIDR.match(hints["cidr"])):
        raise ApiError(400, "Invalid input for field/attribute cidr.")
    return hints


def sanitize_hostname(name: str, default: str) -> str:
    """Nova's ``sanitize_hostname``: the hostname a display name gives (63 characters at most)."""
    host = name.encode("latin-1", "ignore").decode("latin-1")[:63]
    host = re.sub(r"[ _.]", "-", host)
    host = re.sub(r"[^\w.-]+", "", host).lower().strip(".-")
    return host or default[:63]


def names(spec: ServerCreate, count: int, ids: list[str]) -> list[tuple[str, str]]:
    """(display name, hostname) of each of ``count`` servers, as Nova names a multi-create."""
    if count == 1:
        return [(spec.name, spec.hostname or sanitize_hostname(spec.name, f"Server-{ids[0]}"))]
    out = []
    for i in range(count):
        base = sanitize_hostname(spec.name, f"Server-{ids[i]}")
        out.append((f"{spec.name}-{i + 1}", f"{base}-{i + 1}"))
    return out
