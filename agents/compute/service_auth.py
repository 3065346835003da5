"""The compute agent's own credentials for the image service: a clouds.yaml cloud.

A spawn command carries no user token (it is sent by the conductor, which keeps no tokens; a
build may be rescheduled long after the request), so the agent downloads images as a service
account, as Nova's compute does with its ``[glance]`` credentials. The account is a cloud of a
clouds.yaml (by default the admin cloud ``aiostack up`` writes), read when a token is first
needed, so an agent may start before the gateway has bootstrapped the cloud. The token and the
image endpoint come from one password authentication; the token is renewed before it expires.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from agents.compute.drivers.image_cache import ImageUnavailable

AUTH_TIMEOUT = aiohttp.ClientTimeout(total=30)
RENEW_BEFORE = timedelta(minutes=5)


@dataclass(frozen=True)
class _Session:
    token: str
    image_url: str  # the image API's v2 root from the catalog
    expires_at: datetime


class ServiceAuth:
    """Token and image endpoint of ``cloud`` in ``clouds_yaml``; shared by every image request."""

    def __init__(self, clouds_yaml: Path, cloud: str) -> None:
        self.clouds_yaml, self.cloud = clouds_yaml, cloud
        self._session: _Session | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        return (await self._current()).token

    async def image_url(self) -> str:
        return (await self._current()).image_url

    def forget(self) -> None:
        """Drop the token (the image service refused it): the next call authenticates again."""
        self._session = None

    async def _current(self) -> _Session:
        async with self._lock:
            session = self._session
            if session is None or session.expires_at - RENEW_BEFORE <= datetime.now(UTC):
                session = self._session = await self._authenticate()
            return session

    def _auth(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load(self.clouds_yaml.read_text())
            auth = data["clouds"][self.cloud]["auth"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise ImageUnavailable(
                f"no credentials for the image service: cloud {self.cloud!r} "
                f"of {self.clouds_yaml}: {exc!r}"
            ) from exc
        return dict(auth)

    async def _authenticate(self) -> _Session:
        auth = await asyncio.to_thread(self._auth)
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": auth.get("username"),
                            "password": auth.get("password"),
                            "domain": {"name": auth.get("user_domain_name", "Default")},
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": auth.get("project_name"),
                        "domain": {"name": auth.get("project_domain_name", "Default")},
                    }
                },
            }
        }
        url = f"{str(auth.get('auth_url', '')).rstrip('/')}/v3/auth/tokens"
        try:
            async with (
                aiohttp.ClientSession(timeout=AUTH_TIMEOUT) as http,
                http.post(url, json=body) as resp,
            ):
                if resp.status != 201:
                    raise ImageUnavailable(
                        f"the identity service refused cloud {self.cloud!r}: {resp.status}"
                    )
                token = resp.headers["X-Subject-Token"]
                issued = (await resp.json())["token"]
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            raise ImageUnavailable(f"cannot authenticate at {url}: {exc!r}") from exc
        expires_at = datetime.fromisoformat(issued["expires_at"].replace("Z", "+00:00"))
        return _Session(token, _image_v2(issued.get("catalog", [])), expires_at)


def _image_v2(catalog: list[dict[str, Any]]) -> str:
    for service in catalog:
        if service.get("type") != "image":
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") == "public":
                return f"{str(endpoint['url']).rstrip('/')}/v2"
    raise ImageUnavailable("the service catalog has no public image endpoint")
