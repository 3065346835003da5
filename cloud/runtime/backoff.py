"""Exponential backoff with jitter."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first_s: float = 0.1, max_s: float = 5.0) -> None:
        self._first, self._max, self._attempt = first_s, max_s, 0

    def next(self) -> float:
        self._attempt += 1
        delay: float = min(self._max, self._first * 2 ** (self._attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._attempt = 0
