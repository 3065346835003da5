"""First start: the admin and demo accounts, the standard roles, the region and the catalog.

Idempotent: what exists is kept (passwords too, unless the clouds.yaml that holds them is gone), what
is missing is created, and the catalog gains entries for services added since the last run.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cloud.identity.passwords import new_secret
from cloud.identity.repo import DEFAULT_DOMAIN_ID
from cloud.identity.service import Identity
from cloud.store.writes import UnitOfWork
from schemas.identity import (
    DomainCreated,
    EndpointCreated,
    ProjectCreated,
    RegionCreated,
    RoleCreated,
    RoleGranted,
    RoleImplied,
    ServiceCreated,
    UserCreated,
    UserPasswordChanged,
)

# (type, name, path under the gateway) of every service this build serves.
CATALOG: list[tuple[str, str, str]] = [
    ("identity", "keystone", "/identity/v3"),
    ("image", "glance", "/image"),
    ("compute", "nova", "/compute/v2.1"),
]
ROLES = ("admin", "member", "reader", "service")
IMPLIED = (("admin", "member"), ("member", "reader"))


@dataclass(frozen=True)
class Account:
    user: str
    project: str
    role: str
    cloud: str


ADMIN = Account("admin", "admin", "admin", "aiostack-admin")
DEMO = Account("demo", "demo", "member", "aiostack")


def new_id() -> str:
    return uuid.uuid4().hex


async def bootstrap(
    identity: Identity,
    *,
    base_url: str,
    region: str,
    clouds_yaml: Path,
    admin_password: str | None = None,
) -> Path:
    """Make sure the cloud has its accounts and catalog; (re)write ``clouds_yaml``; return it."""
    known = _read_passwords(clouds_yaml)
    passwords = {
        ADMIN.user: admin_password or known.get(ADMIN.cloud) or new_secret(18),
        DEMO.user: known.get(DEMO.cloud) or new_secret(18),
    }
    hashes = {user: await identity.hasher.hash(pw) for user, pw in passwords.items()}
    async with identity.write() as uow:
        await uow.conn.execute("SELECT pg_advisory_xact_lock(hashtext('aiostack.bootstrap'))")
        await _domain(uow)
        roles = {name: await _role(uow, name) for name in ROLES}
        for prior, implied in IMPLIED:
            await _implies(uow, roles[prior], roles[implied])
        for account in (ADMIN, DEMO):
            reset = account.cloud not in known or (account is ADMIN and admin_password is not None)
            project = await _project(uow, account.project)
            user = await _user(uow, account.user, hashes[account.user], project, reset)
            await _grant(uow, user, "project", project, roles[account.role])
        admin_id = await uow.conn.fetchval(
            "SELECT id FROM id_users WHERE domain_id = $1 AND name = 'admin'", DEFAULT_DOMAIN_ID
        )
        await _grant(uow, admin_id, "system", "all", roles["admin"])
        await _catalog(uow, base_url, region)
    _write_clouds_yaml(clouds_yaml, base_url, region, passwords)
    return clouds_yaml


async def _domain(uow: UnitOfWork) -> None:
    created = await uow.conn.fetchval(
        """INSERT INTO id_domains (id, name, description) VALUES ($1, 'Default', 'The default domain')
           ON CONFLICT DO NOTHING RETURNING id""",
        DEFAULT_DOMAIN_ID,
    )
    if created:
        await uow.emit(DomainCreated(resource_id=DEFAULT_DOMAIN_ID, attributes={"name": "Default"}))


async def _role(uow: UnitOfWork, name: str) -> str:
    existing = await uow.conn.fetchval(
        "SELECT id FROM id_roles WHERE name = $1 AND domain_id IS NULL", name
    )
    if existing:
        return str(existing)
    role_id = new_id()
    await uow.conn.execute("INSERT INTO id_roles (id, name) VALUES ($1, $2)", role_id, name)
    await uow.emit(RoleCreated(resource_id=role_id, attributes={"name": name}))
    return role_id


async def _implies(uow: UnitOfWork, prior: str, implied: str) -> None:
    done = await uow.conn.fetchval(
        "INSERT INTO id_implied_roles VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        prior,
        implied,
    )
    if done:
        await uow.emit(RoleImplied(resource_id=prior, attributes={"implied_role_id": implied}))


async def _project(uow: UnitOfWork, name: str) -> str:
    existing = await uow.conn.fetchval(
        "SELECT id FROM id_projects WHERE domain_id = $1 AND name = $2", DEFAULT_DOMAIN_ID, name
    )
    if existing:
        return str(existing)
    project_id = new_id()
    await uow.conn.execute(
        "INSERT INTO id_projects (id, name, domain_id, description) VALUES ($1, $2, $3, $4)",
        project_id,
        name,
        DEFAULT_DOMAIN_ID,
        f"Bootstrap project for {name}",
    )
    await uow.emit(ProjectCreated(resource_id=project_id, attributes={"name": name}))
    return project_id


async def _user(uow: UnitOfWork, name: str, hashed: str, project: str, reset: bool) -> str:
    row = await uow.conn.fetchrow(
        "SELECT id FROM id_users WHERE domain_id = $1 AND name = $2", DEFAULT_DOMAIN_ID, name
    )
    now = uow.clock.now()
    if row is None:
        user_id = new_id()
        await uow.conn.execute(
            """INSERT INTO id_users (id, name, domain_id, password_hash, password_changed_at,
                                     default_project_id) VALUES ($1, $2, $3, $4, $5, $6)""",
            user_id,
            name,
            DEFAULT_DOMAIN_ID,
            hashed,
            now,
            project,
        )
        await uow.emit(UserCreated(resource_id=user_id, attributes={"name": name}))
        return user_id
    if reset:
        await uow.conn.execute(
            """UPDATE id_users SET password_hash = $2, password_changed_at = $3, enabled = true,
                   failed_auth_count = 0 WHERE id = $1""",
            row["id"],
            hashed,
            now,
        )
        await uow.emit(UserPasswordChanged(resource_id=row["id"]))
    return str(row["id"])


async def _grant(
    uow: UnitOfWork, user_id: str, target_type: str, target_id: str, role_id: str
) -> None:
    done = await uow.conn.fetchval(
        """INSERT INTO id_assignments (actor_type, actor_id, target_type, target_id, role_id)
           VALUES ('user', $1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
        user_id,
        target_type,
        target_id,
        role_id,
    )
    if done:
        attributes = {"user_id": user_id, target_type + "_id": target_id, "inherited": False}
        await uow.emit(RoleGranted(resource_id=role_id, attributes=attributes))


async def _catalog(uow: UnitOfWork, base_url: str, region: str) -> None:
    created = await uow.conn.fetchval(
        "INSERT INTO id_regions (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id", region
    )
    if created:
        await uow.emit(RegionCreated(resource_id=region))
    for service_type, name, path in CATALOG:
        service_id = await uow.conn.fetchval(
            "SELECT id FROM id_services WHERE type = $1 AND name = $2", service_type, name
        )
        if service_id is None:
            service_id = new_id()
            await uow.conn.execute(
                "INSERT INTO id_services (id, type, name) VALUES ($1, $2, $3)",
                service_id,
                service_type,
                name,
            )
            await uow.emit(
                ServiceCreated(
                    resource_id=service_id, attributes={"type": service_type, "name": name}
                )
            )
        url = base_url + path
        for interface in ("public", "internal", "admin"):
            endpoint = await uow.conn.fetchrow(
                "SELECT id, url FROM id_endpoints WHERE service_id = $1 AND interface = $2"
                " AND region_id = $3",
                service_id,
                interface,
                region,
            )
            if endpoint is None:
                endpoint_id = new_id()
                await uow.conn.execute(
                    """INSERT INTO id_endpoints (id, service_id, region_id, interface, url)
                       VALUES ($1, $2, $3, $4, $5)""",
                    endpoint_id,
                    service_id,
                    region,
                    interface,
                    url,
                )
                await uow.emit(
                    EndpointCreated(
                        resource_id=endpoint_id,
                        attributes={"service_id": service_id, "interface": interface, "url": url},
                    )
                )


def _read_passwords(path: Path) -> dict[str, str]:
    """cloud name -> password from an earlier clouds.yaml (empty if none or unreadable)."""
    try:
        data = yaml.safe_load(path.read_text())
        clouds = data["clouds"]
        return {name: str(c["auth"]["password"]) for name, c in clouds.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return {}


def _write_clouds_yaml(path: Path, base_url: str, region: str, passwords: dict[str, str]) -> None:
    def cloud(account: Account) -> dict[str, Any]:
        return {
            "auth": {
                "auth_url": f"{base_url}/identity",
                "username": account.user,
                "password": passwords[account.user],
                "project_name": account.project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": region,
            "interface": "public",
            "identity_api_version": 3,
        }

    data = {"clouds": {DEMO.cloud: cloud(DEMO), ADMIN.cloud: cloud(ADMIN)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    os.replace(tmp, path)
