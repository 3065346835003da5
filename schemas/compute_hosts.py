"""Compute hosts: resource reports, reconciliation findings."""

from __future__ import annotations
