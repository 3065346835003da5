"""Placement-side messages: aggregates, server groups, quotas, rescheduling."""

from __future__ import annotations
