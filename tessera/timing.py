"""Seconds per step of a long call, for its report."""

from __future__ import annotations

import time


class Laps:
    """Records, at each call with a step's name, the seconds since the previous call
    (or since it was made) into ``seconds``, rounded to 0.01."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = {} if seconds is None else seconds
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 2)
        self._t = now
