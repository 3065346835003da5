"""The image service object (placeholder until the image API lands)."""

from __future__ import annotations

from cloud.config import Settings
from cloud.store.db import Store


class ImageService:
    """Everything the image API handlers share: the database, the data store, the settings."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store

    async def start(self) -> None:
        """Called once before the gateway serves (e.g. to clean up interrupted uploads)."""

    async def stop(self) -> None:
        """Called once after the gateway stopped serving."""
