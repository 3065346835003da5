"""Handlers of operations on existing instances (reboot, pause, suspend, resize, rebuild, ...)."""

from __future__ import annotations

from agents.compute.base import AgentBase


class OperationHandlers(AgentBase):
    """Mixin of :class:`agents.compute.agent.ComputeAgent`."""
