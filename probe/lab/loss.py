"""Spurious failures for the lab: each connection or query is lost with a fixed probability.

Real paths lose packets and middleboxes reset the odd connection. A detector that turns one
lost probe into a blackout episode is useless, so the lab can lose things on purpose:
`Lab(loss=0.03, seed=1)` makes the censor fronts reset 3% of connections right after the
accept and the DNS server ignore 3% of queries. A probe makes about three such attempts
(A and AAAA queries, the connection), plus one more for a bulk download.

The draws come from one seeded RNG, so the rate is reproducible; which connection is lost is
not when probes run concurrently (their order on the loop varies).
"""

from __future__ import annotations

import random


class Loss:
    """`drop()` is True with probability `rate` (0 <= rate < 1)."""

    def __init__(self, rate: float = 0.0, seed: int | None = None) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {rate}")
        self.rate = rate
        self._random = random.Random(seed)
        self.drawn = 0
        self.dropped = 0

    def drop(self) -> bool:
        if self.rate == 0.0:
            return False
        self.drawn += 1
        lost = self._random.random() < self.rate
        self.dropped += lost
        return lost


NO_LOSS = Loss()
