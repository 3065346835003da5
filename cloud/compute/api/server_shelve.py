"""``shelve``, ``shelveOffload`` and ``unshelve``.

shelve powers the server off and snapshots it into "<name>-shelved" (the createImage path, task
states ``shelving*``); the conductor then offloads it (at once by default: the host drops it, the
claim is released) → SHELVED_OFFLOADED. shelveOffload does the offload of a SHELVED server.

unshelve of an offloaded server is a new placement through the build saga: the instance boots from
the shelved image (task ``scheduling``, ``compute.instance.requested``; the scheduler and the
conductor take it to ACTIVE), then the conductor restores its image reference and deletes the
shelved image. 2.77 adds ``availability_zone``; 2.91 lets it be null (unpin) and adds ``host``
(admins): that host is claimed here, atomically as the scheduler claims, and the build continues
from ``compute.instance.scheduled``. A SHELVED server (still on its host) is just powered on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents.compute.base import address_of
from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.compute import action_log
from cloud.compute.api import COMPUTE
from cloud.compute.api.microversion import version
from cloud.compute.api.server_access import is_admin
from cloud.compute.api.server_actions import ServerAction, action
from cloud.compute.api.server_images import (
    SNAPSHOT_FROM,
    check_state,
    conflict,
    create_snapshot_image,
    invalid,
    lock_server,
    snapshot_from_request,
)
from cloud.conductor import states
from cloud.conductor.base import timer_key
from cloud.conductor.images import delete_image_in
from cloud.scheduler.actor import claim
from cloud.scheduler.state import Request
from cloud.store.writes import UnitOfWork
from schemas.compute import (
    CheckBuildDeadline,
    FlavorSpec,
    InstanceRequested,
    InstanceScheduled,
    StartInstance,
)
from schemas.compute_images import CheckImageDeadline, OffloadInstance

OFFLOAD_DEADLINE_S = 120.0
UNSET = object()


@action("shelve")
async def shelve(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await lock_server(uow, req, server_id)
        check_state(row, "shelve", SNAPSHOT_FROM)
        if not row["host"]:
            raise conflict(server_id, "shelve", row["vm_state"])
        await action_log.start(uow, req, server_id, "shelve")
        await action_log.event_started(uow, server_id, "compute_shelve_instance", host=row["host"])
        image = await create_snapshot_image(uow, req, row, f"{row['name']}-shelved", {})
        await snapshot_from_request(
            uow, req, row, image["id"], purpose="shelve", task_state=states.SHELVING
        )


@action("shelveOffload")
async def shelve_offload(req: ApiRequest[ServerAction], server_id: str, _: Any) -> None:
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await lock_server(uow, req, server_id)
        if not is_admin(req):  # Nova's default policy: offloading is the operator's call
            raise ApiError(
                403, "Policy doesn't allow os_compute_api:os-shelve:shelve_offload to be performed."
            )
        check_state(row, "shelveOffload", (states.SHELVED,))
        await action_log.start(uow, req, server_id, "shelveOffload")
        await action_log.event_started(
            uow, server_id, "compute_shelve_offload_instance", host=row["host"]
        )
        await _set(uow, server_id, task_state=states.SHELVING_OFFLOADING)
        if row["host"]:
            await uow.emit(OffloadInstance(instance_id=server_id), to=address_of(row["host"]))
        # Without an answer (or a host) the conductor offloads it when this fires.
        await uow.schedule(
            CheckImageDeadline(
                instance_id=server_id,
                step=states.SHELVING_OFFLOADING,
                deadline_s=OFFLOAD_DEADLINE_S,
            ),
            at=uow.clock.now() + timedelta(seconds=0 if not row["host"] else OFFLOAD_DEADLINE_S),
            key=timer_key(server_id),
        )


def parse_unshelve(req: ApiRequest[Any], body: Any) -> tuple[Any, str | None]:
    """(availability zone: a name, None to unpin (2.91), or unset; host (2.91)) per microversion."""
    ver = version(req)
    if body is None or ver < (2, 77):
        return UNSET, None  # before 2.77 the body is not looked at, as in Nova
    if not isinstance(body, dict):
        raise invalid("unshelve", f"Value: {body!r}. It is not of type 'object', 'null'")
    allowed = {"availability_zone", "host"} if ver >= (2, 91) else {"availability_zone"}
    unknown = set(body) - allowed
    if unknown:
        raise invalid("unshelve", f"Additional properties are not allowed ({sorted(unknown)})")
    if ver < (2, 91) and "availability_zone" not in body:
        raise invalid("unshelve", "'availability_zone' is a required property")
    zone = body.get("availability_zone", UNSET)
    unpin = zone is None and ver >= (2, 91)  # only 2.91 may unpin the zone
    named = isinstance(zone, str) and 1 <= len(zone) <= 255 and zone.strip() == zone
    if zone is not UNSET and not unpin and not named:
        raise invalid("availability_zone", f"Value: {zone!r}. It is not a valid zone name.")
    host = body.get("host")
    if host is not None and not (isinstance(host, str) and 1 <= len(host) <= 255):
        raise invalid("host", f"Value: {host!r}. It is not of type 'string'")
    return zone, host


@action("unshelve")
async def unshelve(req: ApiRequest[ServerAction], server_id: str, body: Any) -> None:
    zone, host = parse_unshelve(req, body)
    async with req.app[COMPUTE].store.unit(source="compute-api") as uow:
        row = await lock_server(uow, req, server_id)
        if host is not None and not is_admin(req):
            raise ApiError(
                403,
                "Policy doesn't allow os_compute_api:os-shelve:unshelve_to_host to be performed.",
            )
        check_state(row, "unshelve", (states.SHELVED, states.SHELVED_OFFLOADED))
        if row["vm_state"] == states.SHELVED:
            if zone is not UNSET or host is not None:
                raise ApiError(
                    409,
                    "The unshelve server operation on a shelved instance with availability_zone "
                    "or host specified is not supported. The instance must be offloaded first.",
                )
            await action_log.start(uow, req, server_id, "unshelve")
            await _power_on(uow, row)
            return
        await check_placement(uow, zone, host)
        await action_log.start(uow, req, server_id, "unshelve")
        await action_log.event_started(uow, server_id, "compute_unshelve_instance", host=host)
        await boot_shelved(uow, row, zone, host)


async def check_placement(uow: UnitOfWork, zone: Any, host: str | None) -> None:
    conn = uow.conn
    if isinstance(zone, str):
        known = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM cmp_hosts WHERE availability_zone = $1)
                   OR EXISTS (SELECT 1 FROM cmp_aggregates WHERE metadata ->> 'availability_zone' = $1)""",
            zone,
        )
        if not known:
            raise ApiError(400, f"The requested availability zone is not available: {zone}")
    if host is not None:
        found = await conn.fetchrow("SELECT availability_zone FROM cmp_hosts WHERE host = $1", host)
        if found is None:
            raise ApiError(400, f"Compute host {host} could not be found.")


async def boot_shelved(uow: UnitOfWork, row: Any, zone: Any, host: str | None) -> None:
    """Boot the offloaded instance from its shelved image through the build saga."""
    server_id = row["id"]
    shelved = await uow.conn.fetchrow(
        """SELECT shelved_image_id, base_image_ref, availability_zone, project_id,
                  flavor::text AS flavor FROM cmp_instances WHERE id = $1""",
        server_id,
    )
    assert shelved is not None
    image_ref = shelved["shelved_image_id"] or row["image_ref"]
    az = shelved["availability_zone"] if zone is UNSET else zone
    # A new placement: the hosts the first build tried are no reason to avoid them now.
    await uow.conn.execute("DELETE FROM cmp_schedule_attempts WHERE instance_id = $1", server_id)
    await _set(
        uow,
        server_id,
        task_state=states.SCHEDULING,
        image_ref=image_ref,
        base_image_ref=shelved["base_image_ref"] or row["image_ref"],
        availability_zone=az,
    )
    flavor = FlavorSpec.model_validate_json(shelved["flavor"])
    if host is None:
        await uow.emit(
            InstanceRequested(
                instance_id=server_id,
                project_id=shelved["project_id"],
                name=row["name"],
                flavor=flavor,
                image_ref=image_ref,
                availability_zone=az,
            )
        )
        return
    request = Request(
        vcpus=flavor.vcpus,
        ram_mb=flavor.ram_mb + flavor.swap_mb,
        disk_gb=flavor.disk_gb + flavor.ephemeral_gb,
        now=uow.clock.now(),
    )
    if not await claim(uow.conn, server_id, host, request):
        raise ApiError(409, f"Host {host} cannot take instance {server_id}: not enough capacity.")
    await uow.emit(InstanceScheduled(instance_id=server_id, host=host))
    deadline = CheckBuildDeadline(instance_id=server_id, step=states.SCHEDULING, deadline_s=60.0)
    await uow.schedule(
        deadline, at=uow.clock.now() + timedelta(seconds=60), key=timer_key(server_id)
    )


async def _power_on(uow: UnitOfWork, row: Any) -> None:
    """A SHELVED instance is still on its host: start it; its shelved image is not needed."""
    server_id = row["id"]
    image_id = await uow.conn.fetchval(
        "SELECT shelved_image_id FROM cmp_instances WHERE id = $1", server_id
    )
    await _set(
        uow,
        server_id,
        task_state=states.POWERING_ON,
        shelved_image_id=None,
        shelved_at=None,
        shelved_host=None,
        base_image_ref=None,
    )
    await delete_image_in(uow, image_id)
    await uow.emit(StartInstance(instance_id=server_id), to=address_of(row["host"]))
    seconds = 120.0
    deadline = CheckBuildDeadline(
        instance_id=server_id, step=states.POWERING_ON, deadline_s=seconds
    )
    await uow.schedule(
        deadline, at=uow.clock.now() + timedelta(seconds=seconds), key=timer_key(server_id)
    )


async def _set(uow: UnitOfWork, server_id: str, **values: Any) -> None:
    names = list(values)
    assigns = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
    await uow.conn.execute(
        f"UPDATE cmp_instances SET {assigns}, updated_at = $2 WHERE id = $1",
        server_id,
        uow.clock.now(),
        *[values[n] for n in names],
    )
