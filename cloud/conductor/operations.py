"""Sagas of operations on existing instances (reboot, pause, suspend, resize, rebuild, ...)."""

from __future__ import annotations

from cloud.conductor.base import ConductorBase


class OperationsSaga(ConductorBase):
    """Mixin of :class:`cloud.conductor.actor.Conductor`."""
