"""Action ``rebuild``: a new root disk from an image, keeping the server's id, host and flavor.

The API writes what the rebuild changes (image, name, metadata, and per microversion description
2.19, key_name 2.54, user_data 2.57, hostname 2.90) with the task state ``rebuilding`` (status
REBUILD) and answers 202 with the server as Nova's rebuild view shows it; the host then rebuilds.
A stopped server stays stopped, as in Nova.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute.api import COMPUTE
from cloud.compute.api import server_store as store
from cloud.compute.api import server_views as views
from cloud.compute.api.microversion import Version, version
from cloud.compute.api.server_access import is_admin, scope_of
from cloud.compute.api.server_actions import ServerAction, action
from cloud.compute.api.server_boot import check_description, check_hostname
from cloud.compute.api.server_lifecycle import Caller, begin, check_state, deadline_for, lock_server
from cloud.conductor import states
from schemas.compute import FlavorSpec, InstanceMetadataChanged, InstanceUpdated

# The microversion each optional field of the rebuild body first appears at.
FIELD_SINCE: dict[str, Version] = {
    "description": (2, 19),
    "key_name": (2, 54),
    "user_data": (2, 57),
    "trusted_image_certificates": (2, 63),
    "hostname": (2, 90),
}
PERSONALITY_UNTIL: Version = (2, 56)  # removed in 2.57
REBUILD_FULL_VIEW: Version = (2, 75)


class RebuildBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    imageRef: str = Field(min_length=1)  # Nova's field names
    name: str | None = Field(default=None, min_length=1, max_length=255)
    adminPass: str | None = None
    metadata: dict[str, str] | None = None
    preserve_ephemeral: bool = False
    disk_config: str | None = Field(
        default=None, alias="OS-DCF:diskConfig", pattern="^(AUTO|MANUAL)$"
    )
    accessIPv4: str | None = None
    accessIPv6: str | None = None
    personality: list[dict[str, str]] | None = None
    description: str | None = Field(default=None, max_length=255)
    key_name: str | None = Field(default=None, min_length=1, max_length=255)
    user_data: str | None = Field(default=None, max_length=65535)
    trusted_image_certificates: list[str] | None = None
    hostname: str | None = None


def _invalid(detail: str) -> ApiError:
    return ApiError(400, f"Invalid input for field/attribute {detail}")


def parse(body: Any, ver: Version) -> RebuildBody:
    """The rebuild body under this microversion's schema (400 with Nova's wording otherwise)."""
    if not isinstance(body, dict):
        raise _invalid("rebuild. Value: ... is not of type 'object'")
    try:
        spec = RebuildBody.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "rebuild"
        raise _invalid(f"{field}. {first['msg']}") from None
    given = spec.model_fields_set
    late = [n for n, since in FIELD_SINCE.items() if n in given and ver < since]
    if "personality" in given and ver > PERSONALITY_UNTIL:
        late.append("personality")
    if late:
        raise _invalid(
            f"rebuild. Value: ... Additional properties are not allowed ('{late[0]}' was "
            "unexpected)"
        )
    if spec.trusted_image_certificates:
        raise ApiError(400, "Trusted image certificates are not supported.")
    for key, value in (spec.metadata or {}).items():
        if not 1 <= len(key) <= 255 or len(value) > 255:
            raise _invalid(f"metadata. Value: {key}. The key or value is too long.")
    if spec.description is not None:
        check_description(spec.description)
    if "hostname" in given:
        check_hostname(spec.hostname)
    return spec


@action("rebuild")
async def rebuild(req: ApiRequest[ServerAction], server_id: str, body: Any) -> web.Response:
    """``{"rebuild": {"imageRef": ...}}``: 202 with the server (status REBUILD)."""
    ver = version(req)
    spec = parse(body, ver)
    kind = states.OPERATIONS["rebuild"]
    service = req.app[COMPUTE]
    scope, given = scope_of(req), spec.model_fields_set
    admin_pass = spec.adminPass or secrets.token_urlsafe(9)
    async with service.store.unit(source="compute-api") as uow:
        row = await lock_server(uow, server_id, scope)
        check_state(row, kind)
        image = await store.image_status(uow.conn, spec.imageRef, row["project_id"])
        if image is None:
            raise ApiError(400, "Cannot find image for rebuild")
        if image != "active":
            raise ApiError(400, f"Image {spec.imageRef} is not active.")
        changes: dict[str, Any] = {"image_ref": spec.imageRef}
        if spec.name is not None:
            changes["name"] = spec.name
        if spec.metadata is not None:  # Nova replaces the metadata as a whole
            changes["metadata"] = json.dumps(spec.metadata)
        for field in ("description", "user_data", "hostname"):
            if field in given:
                changes[field] = getattr(spec, field)
        if "key_name" in given:
            if spec.key_name is not None and not await uow.conn.fetchval(
                "SELECT 1 FROM cmp_keypairs WHERE user_id = $1 AND name = $2",
                req.auth.user.id,
                spec.key_name,
            ):
                raise ApiError(400, "Invalid key_name provided.")
            changes["key_name"] = spec.key_name
        names = list(changes)
        assigns = ", ".join(
            f"{n} = ${i + 2}{'::jsonb' if n == 'metadata' else ''}" for i, n in enumerate(names)
        )
        await uow.conn.execute(
            f"UPDATE cmp_instances SET {assigns} WHERE id = $1",
            server_id,
            *[changes[n] for n in names],
        )
        metadata = spec.metadata if spec.metadata is not None else json.loads(row["metadata"])
        await begin(
            uow,
            row,
            kind,
            Caller.of(req),
            deadline_for(service.settings, kind),
            flavor=FlavorSpec.model_validate_json(row["flavor"]),
            name=changes.get("name", row["name"]),
            image_ref=spec.imageRef,
            user_data=changes.get("user_data", row["user_data"]),
            metadata=metadata,
            power_on=row["vm_state"] != states.STOPPED,
        )
        # The same facts a rename or a metadata write records, after the action (same request).
        if "name" in changes:
            await uow.emit(
                InstanceUpdated(
                    instance_id=server_id, project_id=row["project_id"], name=changes["name"]
                )
            )
        if spec.metadata is not None:
            await uow.emit(
                InstanceMetadataChanged(
                    instance_id=server_id, project_id=row["project_id"], metadata=spec.metadata
                )
            )
        current = await store.get(uow.conn, server_id, scope)
    admin = is_admin(req)
    if ver >= REBUILD_FULL_VIEW:
        server = views.detail(
            req, current, admin=admin, show_server_groups=True, show_user_data=False
        )
    else:
        server = views.updated(req, current, admin=admin)
    server["adminPass"] = admin_pass
    return web.json_response({"server": server}, status=202)
