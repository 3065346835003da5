"""Helpers every image API module uses: the service, who sees which image, policy as Glance does.

Glance answers 404, never 403, for an image the caller may not see: an image is visible to an
admin, to its owner's project, to everyone when public or community, and when shared to the
projects it is shared with (whatever their membership status). A policy denial on an image the
caller can see is a 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloud.api.errors import ApiError
from cloud.api.router import ApiRequest
from cloud.image import repo
from cloud.image.api import IMAGES
from cloud.image.service import ImageService
from cloud.store.conn import DbConnection


def service(req: ApiRequest[Any]) -> ImageService:
    return req.app[IMAGES]


def is_admin(req: ApiRequest[Any]) -> bool:
    return service(req).policy.allowed("context_is_admin", req.auth.creds)


def allowed(req: ApiRequest[Any], rule: str, target: Mapping[str, Any]) -> bool:
    return service(req).policy.allowed(rule, req.auth.creds, target)


def forbidden(rule: str) -> ApiError:
    return ApiError(403, f"You are not authorized to complete {rule} action.")


def enforce(req: ApiRequest[Any], rule: str, target: Mapping[str, Any]) -> None:
    """403 in Glance's words unless the policy allows ``rule`` on ``target``."""
    if not allowed(req, rule, target):
        raise forbidden(rule)


def image_target(req: ApiRequest[Any], image: Mapping[str, Any]) -> dict[str, Any]:
    """The policy target of an image, as Glance's ``ImageTarget`` builds it."""
    project = req.auth.project_id
    shared_with_caller = image["visibility"] == "shared" and project != image["owner"]
    return {
        **image["properties"],
        "id": image["id"],
        "project_id": image["owner"],
        "owner": image["owner"],
        "visibility": image["visibility"],
        "member_id": project if shared_with_caller else None,
        "status": image["status"],
        "protected": image["protected"],
        "name": image["name"],
    }


async def visible(req: ApiRequest[Any], conn: DbConnection, image: Mapping[str, Any]) -> bool:
    """Whether the caller may see ``image`` at all (Glance's database-level check)."""
    project = req.auth.project_id
    if is_admin(req) or image["owner"] is None:
        return True
    if image["visibility"] in ("public", "community"):
        return True
    if project is None:
        return False
    if project == image["owner"]:
        return True
    return (
        image["visibility"] == "shared"
        and await repo.member(conn, image["id"], project) is not None
    )


async def find_image(
    req: ApiRequest[Any],
    conn: DbConnection,
    image_id: str,
    *,
    for_update: bool = False,
    missing: str | None = None,
) -> repo.Image:
    """The image if the caller may see it (and ``get_image`` allows it), else 404 (``missing``)."""
    image = await repo.get(conn, image_id, for_update=for_update)
    if (
        image is None
        or not await visible(req, conn, image)
        or not allowed(req, "get_image", image_target(req, image))
    ):
        raise ApiError(404, missing or f"No image found with ID {image_id}")
    return image


def enforce_on_image(req: ApiRequest[Any], rule: str, image: Mapping[str, Any]) -> None:
    """403 unless ``rule`` allows the caller on ``image`` (which it can see: ``find_image``)."""
    enforce(req, rule, image_target(req, image))


def check_visibility_change(req: ApiRequest[Any], target: Mapping[str, Any], value: Any) -> None:
    """Making an image public or community has its own rule (``publicize_image`` is admin's);
    ``target``: the image's policy target (or the proposed one of a create)."""
    if value == "public":
        enforce(req, "publicize_image", target)
    elif value == "community":
        enforce(req, "communitize_image", target)


def over_item_limit(
    what: str, attempted: int, maximum: int, image_id: str | None = None
) -> ApiError:
    """413 for an image over its member, property or tag limit, in Glance's words (the tag and
    member sub-resources name the image; a create or PATCH does not)."""
    limits = {
        "members": ("Image member", "the number of allowed image members for this image"),
        "properties": ("Image property", "the number of allowed image properties"),
        "tags": ("Image tag", "the number of allowed image tags"),
    }
    prefix, counted = limits[what]
    message = (
        f"The limit has been exceeded on {counted}. Attempted: {attempted}, Maximum: {maximum}"
    )
    if image_id is not None:
        message = f"{prefix} limit exceeded for image {image_id}: {message}:"
    return ApiError(413, message)


def check_item_limit(what: str, count: int, maximum: int, image_id: str | None = None) -> None:
    """413 when ``count`` items exceed ``maximum`` (-1: unlimited)."""
    if maximum >= 0 and count > maximum:
        raise over_item_limit(what, count, maximum, image_id)
