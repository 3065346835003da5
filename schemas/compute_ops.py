"""Operations on existing instances and their outcomes.

Reboot, pause, suspend, resize, rebuild, shelve, snapshot, console output.
"""

from __future__ import annotations
