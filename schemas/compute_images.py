"""Instance disks to and from the image service (snapshots, shelving) and console output."""

from __future__ import annotations
