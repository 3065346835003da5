"""``/v2/images/{id}/members``: sharing an image with other projects.

Only ``shared`` images have members. The owner adds and removes members; a member project sets
its own status (``pending`` when added, then ``accepted`` or ``rejected``), and an accepted shared
image appears in its default image list. The owner sees every member, a member only itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.image import attributes, repo
from cloud.image.api import router
from cloud.image.api.common import (
    allowed,
    check_item_limit,
    enforce_on_image,
    find_image,
    forbidden,
    image_target,
    is_admin,
    service,
)
from cloud.image.views import member_view
from cloud.store.conn import DbConnection
from schemas.image import ImageMemberAdded, ImageMemberRemoved, ImageMemberUpdated


class MemberCreate(BaseModel):
    """``{"member": "<project id>"}``"""

    member: Any = None


class MemberUpdate(BaseModel):
    """``{"status": "accepted"}`` (or ``pending``, ``rejected``)."""

    status: Any = None


async def _image(req: ApiRequest[Any], conn: DbConnection, *, lock: bool = False) -> repo.Image:
    image_id = req.params["image_id"]
    return await find_image(
        req, conn, image_id, for_update=lock, missing=f"Image {image_id} not found."
    )


def _sees_all_members(req: ApiRequest[Any], image: repo.Image) -> bool:
    return is_admin(req) or (
        req.auth.project_id is not None and req.auth.project_id == image["owner"]
    )


async def _member(req: ApiRequest[Any], conn: DbConnection, image: repo.Image) -> dict[str, Any]:
    """The membership in the URL, if the caller may look at it (403/404 otherwise)."""
    member_id = req.params["member_id"]
    if not allowed(req, "get_member", image_target(req, image)):
        raise ApiError(
            403, f"You are not authorized to lookup the members of the image {image['id']}."
        )
    member = await repo.member(conn, image["id"], member_id)
    if member is None or not (_sees_all_members(req, image) or member_id == req.auth.project_id):
        raise ApiError(404, f"{member_id} not found in the member list of the image {image['id']}.")
    return member


@router.post("/images/{image_id}/members", body=MemberCreate, errors=(409,))
async def add_member(req: ApiRequest[MemberCreate]) -> dict[str, Any]:
    """Share a shared image with a project (its membership starts ``pending``)."""
    member_id = req.body.member
    if member_id is None:
        raise ApiError(400, "Member to be added not specified")
    if not isinstance(member_id, str):
        raise ApiError(400, 'Expected a member in the form: {"member": "image_id"}')
    if not member_id:
        raise ApiError(400, "Member can't be empty")
    if "\x00" in member_id or len(member_id) > 255:
        raise ApiError(400, f"Invalid member id: {member_id!r}")
    svc = service(req)
    async with svc.write() as uow:
        image = await _image(req, uow.conn, lock=True)
        if image["visibility"] != "shared":
            raise ApiError(403, f"Not allowed to create members for image {image['id']}.")
        enforce_on_image(req, "add_member", image)
        count = await repo.count_members(uow.conn, image["id"])
        check_item_limit("members", count + 1, svc.settings.image_member_quota, image["id"])
        member = await repo.add_member(uow.conn, image["id"], member_id, svc.clock.now())
        if member is None:
            raise ApiError(409, f"Member {member_id} is duplicated for image {image['id']}")
        await uow.emit(
            ImageMemberAdded(image_id=image["id"], member_id=member_id, status=member["status"])
        )
    return member_view(member)


@router.get("/images/{image_id}/members")
async def list_members(req: ApiRequest[Any]) -> dict[str, Any]:
    """The members of a shared image (a member project sees only itself)."""
    async with service(req).store.pool.acquire() as conn:
        image = await _image(req, conn)
        prefix = f"Not allowed to list members for image {image['id']}: "
        if image["visibility"] != "shared":
            raise ApiError(403, prefix + "Only shared images have members.")
        if not allowed(req, "get_members", image_target(req, image)):
            raise ApiError(403, prefix + forbidden("get_members").message)
        if _sees_all_members(req, image):
            members = await repo.members(conn, image["id"])
        elif req.auth.project_id is not None:
            members = await repo.members(conn, image["id"], only=req.auth.project_id)
        else:
            members = []
    return {"members": [member_view(m) for m in members], "schema": "/v2/schemas/members"}


@router.get("/images/{image_id}/members/{member_id}")
async def show_member(req: ApiRequest[Any]) -> dict[str, Any]:
    """One membership of a shared image."""
    async with service(req).store.pool.acquire() as conn:
        image = await _image(req, conn)
        if image["visibility"] != "shared":
            raise ApiError(404, "Only shared images have members.")
        try:
            member = await _member(req, conn, image)
        except ApiError as exc:  # Glance hides a forbidden membership as a missing one
            raise ApiError(404, exc.message) from None
    return member_view(member)


@router.put("/images/{image_id}/members/{member_id}", body=MemberUpdate)
async def update_member(req: ApiRequest[MemberUpdate]) -> dict[str, Any]:
    """A member project accepts, rejects (or resets to pending) an image shared with it."""
    status = req.body.status
    if status is None:
        raise ApiError(400, "Status not specified")
    svc = service(req)
    async with svc.write() as uow:
        image = await _image(req, uow.conn, lock=True)
        if image["visibility"] != "shared":
            raise ApiError(403, f"Not allowed to update members for image {image['id']}.")
        member = await _member(req, uow.conn, image)
        target = image_target(req, image)
        if not allowed(req, "modify_member", target) or not (
            is_admin(req) or member["member_id"] == req.auth.project_id
        ):
            raise forbidden("modify_member")
        if status not in attributes.MEMBER_STATUSES:
            raise ApiError(
                400, 'Incorrect request: Status must be "pending", "accepted" or "rejected".'
            )
        updated = await repo.set_member_status(
            uow.conn, image["id"], member["member_id"], status, svc.clock.now()
        )
        assert updated is not None  # the image row is locked
        await uow.emit(
            ImageMemberUpdated(image_id=image["id"], member_id=member["member_id"], status=status)
        )
    return member_view(updated)


@router.delete("/images/{image_id}/members/{member_id}", status=204)
async def remove_member(req: ApiRequest[Any]) -> None:
    """Stop sharing an image with a project (the image owner's decision)."""
    svc = service(req)
    async with svc.write() as uow:
        image = await _image(req, uow.conn, lock=True)
        if image["visibility"] != "shared":
            raise ApiError(403, f"Not allowed to delete members for image {image['id']}.")
        member = await _member(req, uow.conn, image)
        enforce_on_image(req, "delete_member", image)
        await repo.remove_member(uow.conn, image["id"], member["member_id"])
        await uow.emit(
            ImageMemberRemoved(
                image_id=image["id"], member_id=member["member_id"], status=member["status"]
            )
        )
