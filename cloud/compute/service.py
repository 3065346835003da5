"""The compute service object shared by the compute API handlers."""

from __future__ import annotations

from cloud.config import Settings
from cloud.store.db import Store


class ComputeService:
    """Everything the compute API handlers share: the database, the settings."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store

    async def start(self) -> None:
        """Called once before the gateway serves."""

    async def stop(self) -> None:
        """Called once after the gateway stopped serving."""
