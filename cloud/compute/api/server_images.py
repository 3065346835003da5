"""``createImage``: snapshot a server's disk into a new image of the image service.

The image is created here, in the gateway's transaction with the task state, as the image
service creates any image (``queued``, owned by the server's project, private), with Nova's
snapshot properties: the base image's inheritable properties, ``instance_uuid``, ``user_id``,
``image_type`` ``snapshot``, ``base_image_ref``, then the request's ``metadata``; ``min_ram`` and
``min_disk`` as Nova computes them (``min_disk`` at least the flavor's root disk), the formats of
the base image. The host captures the disk and uploads it (see :mod:`agents.compute.images`);
the conductor follows the task states (:mod:`cloud.conductor.images`).

The host uploads with the requesting user's token, carried by the command, as Nova does: the
token already allows exactly this upload, and commands are not kept in the event log.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from aiohttp import web

from agents.compute.base import address_of
from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import action_log, quotas
from cloud.compute.api import COMPUTE
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import locked_server, scope_of
from cloud.compute.api.server_actions import ServerAction, action
from cloud.conductor import states
from cloud.conductor.base import timer_key
from cloud.image import repo as image_repo
from cloud.image.api import IMAGES
from cloud.image.views import image_attributes
from cloud.store.writes import UnitOfWork
from schemas.compute_images import CheckImageDeadline, SnapshotInstance, SnapshotPurpose
from schemas.image import ImageCreated

# Nova's states from which a snapshot (and a shelve) may start.
SNAPSHOT_FROM = (states.ACTIVE, states.STOPPED, "paused", "suspended")
# Nova's NON_INHERITABLE_IMAGE_PROPERTIES, [DEFAULT]non_inheritable_image_properties, and what
# each snapshot sets anew.
NOT_INHERITED = frozenset(
    {
        "cinder_encryption_key_id",
        "cinder_encryption_key_deletion_policy",
        "img_signature",
        "img_signature_hash_method",
        "img_signature_key_type",
        "img_signature_certificate_uuid",
        "cache_in_nova",
        "bittorrent",
        "instance_uuid",
        "image_type",
        "base_image_ref",
        "user_id",
        "image_location",
        "image_state",
        "owner_id",
    }
)
NOT_INHERITED_PREFIXES = ("os_glance",)
_NAME = re.compile(r"^\S(.*\S)?$", re.DOTALL)  # Nova's names: no leading or trailing whitespace
_META_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")

INSTANCE_COLUMNS = """id, name, project_id, vm_state, task_state, host, image_ref, base_image_ref,
                      flavor::text AS flavor, (flavor ->> 'disk_gb')::int AS root_gb"""


def invalid(field: str, why: str) -> ApiError:
    return ApiError(400, f"Invalid input for field/attribute {field}. {why}")


def parse_create_image(body: Any) -> tuple[str, dict[str, str]]:
    """``{"name": ..., "metadata": {...}}`` as Nova's schema allows it."""
    if not isinstance(body, dict):
        raise invalid("createImage", f"Value: {body!r}. {body!r} is not of type 'object'")
    unknown = set(body) - {"name", "metadata"}
    if unknown:
        raise invalid("createImage", f"Additional properties are not allowed ({sorted(unknown)})")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not _NAME.match(name):
        raise invalid("name", f"Value: {name!r}. A name of 1 to 255 characters is required.")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise invalid("metadata", f"Value: {metadata!r}. It is not of type 'object'")
    for key, value in metadata.items():
        if not _META_KEY.match(key):
            raise invalid("metadata", f"Metadata key {key!r} is not allowed.")
        if not isinstance(value, str) or len(value) > 255:
            raise invalid(f"metadata/{key}", "Metadata values are strings of 255 characters.")
    return name, metadata


async def lock_server(uow: UnitOfWork, req: ApiRequest[Any], server_id: str) -> Any:
    return await locked_server(uow.conn, server_id, scope_of(req), INSTANCE_COLUMNS)


def conflict(server_id: str, action_name: str, vm_state: str) -> ApiError:
    return ApiError(
        409, f"Cannot '{action_name}' instance {server_id} while it is in vm_state {vm_state}"
    )


def check_state(row: Any, action_name: str, allowed: tuple[str, ...]) -> None:
    """Nova's ``check_instance_state``: one of ``allowed`` vm_states and no task state."""
    if row["vm_state"] not in allowed:
        raise conflict(row["id"], action_name, row["vm_state"])
    if row["task_state"] is not None:
        raise ApiError(
            409,
            f"Cannot '{action_name}' instance {row['id']} while it is in task_state "
            f"{row['task_state']}",
        )


async def create_snapshot_image(
    uow: UnitOfWork, req: ApiRequest[Any], row: Any, name: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """The queued image record of a snapshot of ``row``'s server (see the module's docstring)."""
    conn = uow.conn
    limit = (await quotas.limits_of(conn, row["project_id"])).get("metadata_items", -1)
    if 0 <= limit < len(metadata):
        raise ApiError(403, "Image metadata limit exceeded")
    base = await image_repo.get(conn, row["image_ref"]) if row["image_ref"] else None
    inherited = {
        k: v
        for k, v in (base["properties"] if base else {}).items()
        if k not in NOT_INHERITED and not k.startswith(NOT_INHERITED_PREFIXES)
    }
    properties = inherited | {
        "instance_uuid": row["id"],
        "user_id": req.auth.user.id,
        "image_type": "snapshot",
        "base_image_ref": row["base_image_ref"] or row["image_ref"] or "",
        "owner_user_name": req.auth.user.name,
        # What Nova's libvirt driver adds to every snapshot it uploads.
        "image_location": "snapshot",
        "image_state": "available",
        "owner_id": row["project_id"],
    }
    if req.auth.project is not None:
        properties["owner_project_name"] = req.auth.project.name
    properties |= metadata
    images = req.app.get(IMAGES)
    if images is not None:
        limit = images.settings.image_property_quota
        if 0 <= limit < len(properties):
            raise ApiError(403, "Image metadata limit exceeded")
        try:
            await images.check_quota(conn, row["project_id"], extra_images=1)
        except ApiError as exc:
            raise ApiError(403, "Quota exceeded for images of this project") from exc
    now = uow.clock.now()
    values = {
        "id": str(uuid.uuid4()),
        "name": name,
        "owner": row["project_id"],
        "status": "queued",
        "visibility": "private",
        "protected": False,
        "os_hidden": False,
        "container_format": (base or {}).get("container_format") or "bare",
        "disk_format": (base or {}).get("disk_format") or "raw",
        "min_disk": max((base or {}).get("min_disk") or 0, row["root_gb"] or 0),
        "min_ram": (base or {}).get("min_ram") or 0,
        "tags": [],
        "properties": properties,
        "created_at": now,
        "updated_at": now,
    }
    image = await image_repo.insert(conn, values)
    if image is None:  # a fresh uuid4 never clashes; a clash is a bug, not a client error
        raise RuntimeError(f"image id {values['id']} already used")
    await uow.emit(ImageCreated(image_id=image["id"], attributes=image_attributes(image)))
    return image


async def start_snapshot(
    uow: UnitOfWork,
    row: Any,
    image_id: str,
    *,
    purpose: SnapshotPurpose,
    task_state: str,
    gateway_url: str,
    token: str,
    deadline_s: float,
) -> None:
    """Set the first task state, tell the host (which uploads to ``gateway_url`` with
    ``token``), and arm the step's deadline."""
    server_id = row["id"]
    await uow.conn.execute(
        """UPDATE cmp_instances SET task_state = $2, snapshot_image_id = $3, updated_at = $4
           WHERE id = $1""",
        server_id,
        task_state,
        image_id,
        uow.clock.now(),
    )
    await uow.emit(
        SnapshotInstance(
            instance_id=server_id,
            image_id=image_id,
            image_url=f"{gateway_url}/image/v2/images/{image_id}",
            auth_token=token,
            purpose=purpose,
            power_off=purpose == "shelve",
        ),
        to=address_of(row["host"]),
    )
    await uow.schedule(
        CheckImageDeadline(
            instance_id=server_id, step=task_state, deadline_s=deadline_s, image_id=image_id
        ),
        at=uow.clock.now() + timedelta(seconds=deadline_s),
        key=timer_key(server_id),
    )


async def snapshot_from_request(
    uow: UnitOfWork,
    req: ApiRequest[Any],
    row: Any,
    image_id: str,
    *,
    purpose: SnapshotPurpose,
    task_state: str,
) -> None:
    """:func:`start_snapshot` with the gateway's URL, the caller's token, the set deadline."""
    settings = req.app[COMPUTE].settings
    await start_snapshot(
        uow,
        row,
        image_id,
        purpose=purpose,
        task_state=task_state,
        gateway_url=settings.base_url(),
        token=req.auth.token,
        deadline_s=settings.snapshot_deadline_s,
    )


@action("createImage")
async def create_image(
    req: ApiRequest[ServerAction], server_id: str, body: Any
) -> web.Response | dict[str, Any]:
    """202; from 2.45 the body names the image, before it the ``Location`` header does."""
    name, metadata = parse_create_image(body)
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await lock_server(uow, req, server_id)
        check_state(row, "createImage", SNAPSHOT_FROM)
        if not row["host"]:
            raise conflict(server_id, "createImage", row["vm_state"])
        await action_log.start(uow, req, server_id, "createImage")
        await action_log.event_started(
            uow, server_id, "compute_snapshot_instance", host=row["host"]
        )
        image = await create_snapshot_image(uow, req, row, name, metadata)
        await snapshot_from_request(
            uow, req, row, image["id"], purpose="snapshot", task_state=states.IMAGE_SNAPSHOT
        )
    if version(req) >= (2, 45):
        return {"image_id": image["id"]}
    location = f"{req.base_url()}/image/v2/images/{image['id']}"
    return web.Response(status=202, headers={"Location": location})
