"""The one retry delay of the live feeder: every retry loop (reconnects, market loading,
liquidation watches, task restarts) waits ``Backoff.next()`` seconds."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter (a delay anywhere in ``[0, ceiling]``, the
    ceiling doubling from ``base`` up to ``cap``); ``reset`` after a success."""

    base: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def ceiling(self) -> float:
        """The largest delay of the next attempt (the exponent stops growing at the cap)."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 64))

    def next(self) -> float:
        ceiling = self.ceiling()
        if ceiling < self.cap:  # no counting past the cap: no overflow after any failures
            self.attempt += 1
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.attempt = 0
