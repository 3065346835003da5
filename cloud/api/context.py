"""Who is calling: the validated token's identity, scope and roles, as every service sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Named:
    """An id with its name (and, for users and projects, the owning domain)."""

    id: str
    name: str
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True, slots=True)
class AuthContext:
    """A validated token. Exactly one of ``project``/``domain``/``system`` is set, or none (unscoped)."""

    token: str
    user: Named
    methods: tuple[str, ...]
    audit_ids: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    roles: tuple[Named, ...] = ()
    project: Named | None = None
    domain: Named | None = None
    system: str | None = None
    app_cred_id: str | None = None
    app_cred: Named | None = None  # the application credential's id and name, when one was used
    app_cred_restricted: bool = True
    # Facts the policy engine reads, computed once per token (see ``creds``).
    _creds: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._creds.update(
            roles=[r.name for r in self.roles],
            user_id=self.user.id,
            user_domain_id=self.user.domain_id,
            project_id=self.project.id if self.project else None,
            project_domain_id=self.project.domain_id if self.project else None,
            domain_id=self.domain.id if self.domain else None,
            system_scope=self.system,
        )

    @property
    def creds(self) -> dict[str, Any]:
        """The policy engine's view: role names, user, scope ids."""
        return self._creds

    @property
    def project_id(self) -> str | None:
        return self.project.id if self.project else None

    @property
    def role_names(self) -> list[str]:
        return self._creds["roles"]  # type: ignore[no-any-return]

    def has_role(self, name: str) -> bool:
        return name in self._creds["roles"]


class TokenValidator(Protocol):
    """Turns an ``X-Auth-Token`` into an :class:`AuthContext`; raises ``ApiError(401)`` if it can't."""

    async def validate(self, token: str) -> AuthContext: ...
