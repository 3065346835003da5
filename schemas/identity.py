"""Identity (Keystone) events: one per change of a domain, project, user, group, role, grant,
catalog entry or credential. Bodies never carry secrets (no passwords, hashes or credential blobs).

Every event names the resource it changed (``resource_id``; its stream is ``identity.<type>:<id>``) and
carries the attributes as the API shows them after the change (``attributes``; empty on delete).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.base import Event


class IdentityChanged(Event):
    """Base of identity events (not sent itself)."""

    stream_key: ClassVar[str | None] = "resource_id"

    resource_id: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class DomainCreated(IdentityChanged):
    """A domain was created. v1: initial."""

    kind: Literal["identity.domain.created"] = "identity.domain.created"
    v: Literal[1] = 1


class DomainUpdated(IdentityChanged):
    """A domain was updated. v1: initial."""

    kind: Literal["identity.domain.updated"] = "identity.domain.updated"
    v: Literal[1] = 1


class DomainDeleted(IdentityChanged):
    """A domain was deleted. v1: initial."""

    kind: Literal["identity.domain.deleted"] = "identity.domain.deleted"
    v: Literal[1] = 1


class ProjectCreated(IdentityChanged):
    """A project was created. v1: initial."""

    kind: Literal["identity.project.created"] = "identity.project.created"
    v: Literal[1] = 1


class ProjectUpdated(IdentityChanged):
    """A project was updated. v1: initial."""

    kind: Literal["identity.project.updated"] = "identity.project.updated"
    v: Literal[1] = 1


class ProjectDeleted(IdentityChanged):
    """A project was deleted. v1: initial."""

    kind: Literal["identity.project.deleted"] = "identity.project.deleted"
    v: Literal[1] = 1


class UserCreated(IdentityChanged):
    """A user was created. v1: initial."""

    kind: Literal["identity.user.created"] = "identity.user.created"
    v: Literal[1] = 1


class UserUpdated(IdentityChanged):
    """A user was updated. v1: initial."""

    kind: Literal["identity.user.updated"] = "identity.user.updated"
    v: Literal[1] = 1


class UserDeleted(IdentityChanged):
    """A user was deleted. v1: initial."""

    kind: Literal["identity.user.deleted"] = "identity.user.deleted"
    v: Literal[1] = 1


class UserPasswordChanged(IdentityChanged):
    """A user's password was changed. v1: initial."""

    kind: Literal["identity.user.password_changed"] = "identity.user.password_changed"
    v: Literal[1] = 1


class UserLockedOut(IdentityChanged):
    """A user was locked out after too many failed logins. v1: initial."""

    kind: Literal["identity.user.locked_out"] = "identity.user.locked_out"
    v: Literal[1] = 1


class GroupCreated(IdentityChanged):
    """A group was created. v1: initial."""

    kind: Literal["identity.group.created"] = "identity.group.created"
    v: Literal[1] = 1


class GroupUpdated(IdentityChanged):
    """A group was updated. v1: initial."""

    kind: Literal["identity.group.updated"] = "identity.group.updated"
    v: Literal[1] = 1


class GroupDeleted(IdentityChanged):
    """A group was deleted. v1: initial."""

    kind: Literal["identity.group.deleted"] = "identity.group.deleted"
    v: Literal[1] = 1


class GroupMemberAdded(IdentityChanged):
    """A user was added to a group (``attributes.user_id``). v1: initial."""

    kind: Literal["identity.group.member_added"] = "identity.group.member_added"
    v: Literal[1] = 1


class GroupMemberRemoved(IdentityChanged):
    """A user was removed from a group (``attributes.user_id``). v1: initial."""

    kind: Literal["identity.group.member_removed"] = "identity.group.member_removed"
    v: Literal[1] = 1


class RoleCreated(IdentityChanged):
    """A role was created. v1: initial."""

    kind: Literal["identity.role.created"] = "identity.role.created"
    v: Literal[1] = 1


class RoleUpdated(IdentityChanged):
    """A role was updated. v1: initial."""

    kind: Literal["identity.role.updated"] = "identity.role.updated"
    v: Literal[1] = 1


class RoleDeleted(IdentityChanged):
    """A role was deleted. v1: initial."""

    kind: Literal["identity.role.deleted"] = "identity.role.deleted"
    v: Literal[1] = 1


class RoleImplied(IdentityChanged):
    """A role now implies another (``attributes.implied_role_id``). v1: initial."""

    kind: Literal["identity.role.implied"] = "identity.role.implied"
    v: Literal[1] = 1


class RoleImplicationRemoved(IdentityChanged):
    """A role no longer implies another. v1: initial."""

    kind: Literal["identity.role.implication_removed"] = "identity.role.implication_removed"
    v: Literal[1] = 1


class RoleGranted(IdentityChanged):
    """A role assignment was granted (actor, target, inherited in ``attributes``). v1: initial."""

    kind: Literal["identity.role.granted"] = "identity.role.granted"
    v: Literal[1] = 1


class RoleRevoked(IdentityChanged):
    """A role assignment was revoked (actor, target, inherited in ``attributes``). v1: initial."""

    kind: Literal["identity.role.revoked"] = "identity.role.revoked"
    v: Literal[1] = 1


class RegionCreated(IdentityChanged):
    """A region was created. v1: initial."""

    kind: Literal["identity.region.created"] = "identity.region.created"
    v: Literal[1] = 1


class RegionUpdated(IdentityChanged):
    """A region was updated. v1: initial."""

    kind: Literal["identity.region.updated"] = "identity.region.updated"
    v: Literal[1] = 1


class RegionDeleted(IdentityChanged):
    """A region was deleted. v1: initial."""

    kind: Literal["identity.region.deleted"] = "identity.region.deleted"
    v: Literal[1] = 1


class ServiceCreated(IdentityChanged):
    """A service was created. v1: initial."""

    kind: Literal["identity.service.created"] = "identity.service.created"
    v: Literal[1] = 1


class ServiceUpdated(IdentityChanged):
    """A service was updated. v1: initial."""

    kind: Literal["identity.service.updated"] = "identity.service.updated"
    v: Literal[1] = 1


class ServiceDeleted(IdentityChanged):
    """A service was deleted. v1: initial."""

    kind: Literal["identity.service.deleted"] = "identity.service.deleted"
    v: Literal[1] = 1


class EndpointCreated(IdentityChanged):
    """A endpoint was created. v1: initial."""

    kind: Literal["identity.endpoint.created"] = "identity.endpoint.created"
    v: Literal[1] = 1


class EndpointUpdated(IdentityChanged):
    """A endpoint was updated. v1: initial."""

    kind: Literal["identity.endpoint.updated"] = "identity.endpoint.updated"
    v: Literal[1] = 1


class EndpointDeleted(IdentityChanged):
    """A endpoint was deleted. v1: initial."""

    kind: Literal["identity.endpoint.deleted"] = "identity.endpoint.deleted"
    v: Literal[1] = 1


class CredentialCreated(IdentityChanged):
    """A credential was created. v1: initial."""

    kind: Literal["identity.credential.created"] = "identity.credential.created"
    v: Literal[1] = 1


class CredentialUpdated(IdentityChanged):
    """A credential was updated. v1: initial."""

    kind: Literal["identity.credential.updated"] = "identity.credential.updated"
    v: Literal[1] = 1


class CredentialDeleted(IdentityChanged):
    """A credential was deleted. v1: initial."""

    kind: Literal["identity.credential.deleted"] = "identity.credential.deleted"
    v: Literal[1] = 1


class ApplicationCredentialCreated(IdentityChanged):
    """A application credential was created. v1: initial."""

    kind: Literal["identity.application_credential.created"] = (
        "identity.application_credential.created"
    )
    v: Literal[1] = 1


class ApplicationCredentialDeleted(IdentityChanged):
    """A application credential was deleted. v1: initial."""

    kind: Literal["identity.application_credential.deleted"] = (
        "identity.application_credential.deleted"
    )
    v: Literal[1] = 1


class TokenRevoked(IdentityChanged):
    """A token was revoked (``resource_id`` is its audit id). v1: initial."""

    kind: Literal["identity.token.revoked"] = "identity.token.revoked"
    v: Literal[1] = 1
