"""Host synchronisation: what the hosts report against what the database says (power state, orphans)."""

from __future__ import annotations

from cloud.conductor.base import ConductorBase


class HostSync(ConductorBase):
    """Mixin of :class:`cloud.conductor.actor.Conductor`."""
