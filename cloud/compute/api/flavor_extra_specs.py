"""``/flavors/{id}/os-extra_specs``: a flavor's extra specs (read: project readers; write: admin).

Keys match ``^[a-zA-Z0-9-_:. ]{1,255}$``; values are strings of at most 255 characters (numbers
and booleans are stored as their text). From 2.86 keys and values of well-known namespaces are
validated as Nova does (see :func:`validate_spec`); keys of other namespaces pass unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import policies
from cloud.compute.api import router
from cloud.compute.api.flavor_schema import invalid
from cloud.compute.api.flavors import attributes, enforce, find_flavor, service
from cloud.compute.api.microversion import version
from schemas.compute_catalog import FlavorUpdated

KEY_RE = re.compile(r"^[a-zA-Z0-9\-_:. ]{1,255}$")
TRUE_FALSE = ("true", "false", "True", "False", "1", "0", "yes", "no")


class SpecsBody(BaseModel):
    """``{"extra_specs": {"key": "value", ...}}``"""

    model_config = ConfigDict(extra="forbid")
    extra_specs: Any


class OneSpec(BaseModel):
    """``{"<key>": "<value>"}``: the key of the URL, once."""

    model_config = ConfigDict(extra="allow")


def _enum(*values: str) -> Callable[[str], bool]:
    return lambda v: v in values


def _int(minimum: int = 0) -> Callable[[str], bool]:
    return lambda v: v.lstrip("-").isdigit() and int(v) >= minimum


def _page_size(v: str) -> bool:
    return v in ("small", "large", "any") or re.fullmatch(r"\d+(KB|MB|GB|K|M|G)?", v) is not None


_BOOL = _enum(*TRUE_FALSE)
# Validated keys of the namespaces Nova registers (2.86); a subset, see the module docstring.
KNOWN: dict[str, Callable[[str], bool]] = {
    "hw:cpu_policy": _enum("dedicated", "shared", "mixed"),
    "hw:cpu_thread_policy": _enum("prefer", "isolate", "require"),
    "hw:emulator_threads_policy": _enum("isolate", "share"),
    "hw:mem_page_size": _page_size,
    "hw:numa_nodes": _int(1),
    "hw:cpu_sockets": _int(1),
    "hw:cpu_cores": _int(1),
    "hw:cpu_threads": _int(1),
    "hw:cpu_max_sockets": _int(1),
    "hw:cpu_max_cores": _int(1),
    "hw:cpu_max_threads": _int(1),
    "hw:watchdog_action": _enum("disabled", "pause", "poweroff", "reset", "none"),
    "hw:boot_menu": _BOOL,
    "hw:vif_multiqueue_enabled": _BOOL,
    "hw:mem_encryption": _BOOL,
    "hw:pmu": _BOOL,
    "hw:serial_port_count": _int(0),
    "hw:tpm_version": _enum("1.2", "2.0"),
    "hw:tpm_model": _enum("tpm-tis", "tpm-crb"),
    "hw_rng:allowed": _BOOL,
    "hw_rng:rate_bytes": _int(0),
    "hw_rng:rate_period": _int(0),
    "hw_video:ram_max_mb": _int(0),
    "quota:cpu_shares": _int(0),
    "quota:cpu_period": _int(0),
    "quota:cpu_quota": _int(-1),
    "quota:disk_read_bytes_sec": _int(0),
    "quota:disk_write_bytes_sec": _int(0),
    "quota:disk_total_bytes_sec": _int(0),
    "quota:disk_read_iops_sec": _int(0),
    "quota:disk_write_iops_sec": _int(0),
    "quota:disk_total_iops_sec": _int(0),
    "quota:vif_inbound_average": _int(0),
    "quota:vif_outbound_average": _int(0),
}
# Namespaces whose every key we know: an unknown key there is refused.
CLOSED = ("hw_rng:", "hw_video:")
_RESOURCES = re.compile(r"^resources(\d+|_[a-zA-Z0-9_-]+)?:[A-Z0-9_]+$")
_TRAIT = re.compile(r"^trait(\d+|_[a-zA-Z0-9_-]+)?:[A-Z0-9_]+$")


def validate_spec(key: str, value: str) -> None:
    """400 for a key or value Nova's 2.86 extra spec validation refuses."""
    check = KNOWN.get(key)
    if check is not None:
        if not check(value):
            raise ApiError(400, f"Validation failed; {value} is not a valid value for {key}.")
        return
    if key.startswith(("resources", "trait")) and ":" in key:
        pattern = _RESOURCES if key.startswith("resources") else _TRAIT
        if pattern.match(key) is None:
            raise ApiError(400, f"Validation failed; extra spec '{key}' does not exist.")
        good = _int(0)(value) if pattern is _RESOURCES else value in ("required", "forbidden")
        if not good:
            raise ApiError(400, f"Validation failed; {value} is not a valid value for {key}.")
        return
    if key.startswith(CLOSED):
        raise ApiError(400, f"Validation failed; extra spec '{key}' does not exist.")


def _specs(req: ApiRequest[Any], specs: Any) -> dict[str, str]:
    if not isinstance(specs, dict):
        raise invalid("extra_specs", specs, f"{specs!r} is not of type 'object'")
    out: dict[str, str] = {}
    for key, value in specs.items():
        if not KEY_RE.match(key):
            raise invalid("extra_specs", specs, f"Additional properties are not allowed ('{key}')")
        if isinstance(value, (bool, int, float, str)):
            text = str(value)
        else:
            raise invalid(key, value, f"{value!r} is not of type 'string', 'number', 'boolean'")
        if not 0 <= len(text) <= 255:
            raise invalid(key, value, f"{value!r} is too long")
        if version(req) >= (2, 86):
            validate_spec(key, text)
        out[key] = text
    return out


async def _change(req: ApiRequest[Any], set_: dict[str, str], unset: str | None = None) -> None:
    async with service(req).write() as uow:
        flavor = await find_flavor(req, uow.conn, req.params["flavor_id"], lock=True)
        specs = dict(flavor["extra_specs"])
        if unset is not None:
            if unset not in specs:
                raise ApiError(404, f"Flavor {flavor['id']} has no extra specs with key {unset}.")
            del specs[unset]
        specs.update(set_)
        await uow.conn.execute(
            "UPDATE cmp_flavors SET extra_specs = $2::jsonb WHERE id = $1",
            flavor["id"],
            json.dumps(specs),
        )
        flavor["extra_specs"] = specs
        changed = [f"extra_specs.{k}" for k in [*set_, *([unset] if unset else [])]]
        await uow.emit(
            FlavorUpdated(flavor_id=flavor["id"], attributes=attributes(flavor), changed=changed)
        )


@router.get("/flavors/{flavor_id}/os-extra_specs", errors=(403, 404))
async def list_extra_specs(req: ApiRequest[Any]) -> dict[str, Any]:
    """A flavor's extra specs."""
    enforce(req, policies.SPECS_INDEX)
    async with service(req).store.pool.acquire() as conn:
        flavor = await find_flavor(req, conn, req.params["flavor_id"])
    return {"extra_specs": flavor["extra_specs"]}


@router.post("/flavors/{flavor_id}/os-extra_specs", body=SpecsBody, errors=(403, 404))
async def create_extra_specs(req: ApiRequest[SpecsBody]) -> dict[str, Any]:
    """Add or replace extra specs of a flavor (admin)."""
    enforce(req, policies.SPECS_CREATE)
    specs = _specs(req, req.body.extra_specs)
    await _change(req, specs)
    return {"extra_specs": specs}


@router.get("/flavors/{flavor_id}/os-extra_specs/{key}", errors=(403, 404))
async def show_extra_spec(req: ApiRequest[Any]) -> dict[str, Any]:
    """One extra spec of a flavor."""
    enforce(req, policies.SPECS_SHOW)
    key = req.params["key"]
    async with service(req).store.pool.acquire() as conn:
        flavor = await find_flavor(req, conn, req.params["flavor_id"])
    if key not in flavor["extra_specs"]:
        raise ApiError(404, f"Flavor {flavor['id']} has no extra specs with key {key}.")
    return {key: flavor["extra_specs"][key]}


@router.put("/flavors/{flavor_id}/os-extra_specs/{key}", body=OneSpec, errors=(403, 404))
async def update_extra_spec(req: ApiRequest[OneSpec]) -> dict[str, Any]:
    """Set one extra spec of a flavor (admin)."""
    enforce(req, policies.SPECS_UPDATE)
    body = req.body.model_extra or {}
    key = req.params["key"]
    if len(body) > 1:
        raise ApiError(400, "Request body contains too many items")
    if key not in body:
        raise ApiError(400, "Request body and URI mismatch")
    specs = _specs(req, body)
    await _change(req, specs)
    return specs


@router.delete("/flavors/{flavor_id}/os-extra_specs/{key}", errors=(403, 404))
async def delete_extra_spec(req: ApiRequest[Any]) -> None:
    """Remove one extra spec of a flavor (admin)."""
    enforce(req, policies.SPECS_DELETE)
    await _change(req, {}, unset=req.params["key"])
