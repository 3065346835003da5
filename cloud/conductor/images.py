"""Sagas that move instance disks to and from the image service (createImage, shelve, unshelve)."""

from __future__ import annotations

from cloud.conductor.base import ConductorBase


class ImageSaga(ConductorBase):
    """Mixin of :class:`cloud.conductor.actor.Conductor`."""
