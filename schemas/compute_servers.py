"""Server attributes users change through the servers API (tags, lock, description).

Events of stream ``instance:<id>``.
"""

from __future__ import annotations
