"""Glance's default policy (secure RBAC), rule for rule, for :class:`cloud.api.policy.Policy`.

Rule names are Glance's own (``get_image``, ``publicize_image``, ...), so a Glance policy file's
image rules apply unchanged (``AIOSTACK_POLICY_FILE``; only the rules named here are read from it).

Targets are flat, as Glance builds them from an image: ``project_id`` and ``owner`` (the image's
owner), ``visibility``, ``member_id`` (the caller's project when the image is shared and the caller
does not own it; else absent), ``id``, ``status``, ``protected`` and the extra properties. For a
create, the proposed ``owner`` (default: the caller's project) and ``visibility``. For
``get_images``: ``project_id``, the caller's project.

Credentials: ``roles`` (implied roles included) and ``project_id`` of the token.
"""

from __future__ import annotations

ADMIN = "rule:context_is_admin"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
IMAGE_MEMBER = "project_id:%(member_id)s"
COMMUNITY = "'community':%(visibility)s"
PUBLIC = "'public':%(visibility)s"
SHARED = "'shared':%(visibility)s"

ADMIN_OR_PROJECT_MEMBER = f"{ADMIN} or ({PROJECT_MEMBER})"
ADMIN_OR_PROJECT_READER = f"{ADMIN} or ({PROJECT_READER})"
ADMIN_OR_PROJECT_READER_GET_IMAGE = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or {IMAGE_MEMBER}"
    f" or {COMMUNITY} or {PUBLIC} or {SHARED}))"
)
ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE = (
    f"{ADMIN} or (role:member and (project_id:%(project_id)s or {IMAGE_MEMBER}"
    f" or {COMMUNITY} or {PUBLIC} or {SHARED}))"
)
ADMIN_OR_PROJECT_MEMBER_CREATE_IMAGE = f"{ADMIN} or ({PROJECT_MEMBER} and project_id:%(owner)s)"
ADMIN_OR_SHARED_MEMBER = f"{ADMIN} or (role:member and {IMAGE_MEMBER})"
ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or {IMAGE_MEMBER}))"
)

DEFAULT_RULES: dict[str, str] = {
    "context_is_admin": "role:admin",
    "default": "",
    "service_api": "role:service or role:admin",
    # images
    "add_image": ADMIN_OR_PROJECT_MEMBER_CREATE_IMAGE,
    "get_image": ADMIN_OR_PROJECT_READER_GET_IMAGE,
    "get_images": ADMIN_OR_PROJECT_READER,
    "modify_image": ADMIN_OR_PROJECT_MEMBER,
    "delete_image": ADMIN_OR_PROJECT_MEMBER,
    "publicize_image": ADMIN,
    "communitize_image": ADMIN_OR_PROJECT_MEMBER,
    "deactivate": ADMIN_OR_PROJECT_MEMBER,
    "reactivate": ADMIN_OR_PROJECT_MEMBER,
    # image data (the upload, download and import paths enforce these)
    "upload_image": ADMIN_OR_PROJECT_MEMBER,
    "download_image": ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE,
    "copy_image": ADMIN,
    # sharing
    "add_member": ADMIN_OR_PROJECT_MEMBER,
    "delete_member": ADMIN_OR_PROJECT_MEMBER,
    "get_member": ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER,
    "get_members": ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER,
    "modify_member": ADMIN_OR_SHARED_MEMBER,
}
