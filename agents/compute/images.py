"""Handlers that move instance disks to and from the image service, and console output."""

from __future__ import annotations

from agents.compute.base import AgentBase


class ImageHandlers(AgentBase):
    """Mixin of :class:`agents.compute.agent.ComputeAgent`."""
