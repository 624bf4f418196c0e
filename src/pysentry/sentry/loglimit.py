"""Log lines an unauthenticated client can trigger, rate-limited so it cannot flood the log.

One token bucket per kind of message: ``burst`` lines at once, then one every
``interval_s``. Lines over the limit are counted, and the next line of that kind that gets through
is preceded by ``Suppressed N similar messages (<kind>) in the last <T>s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_BURST = 10
DEFAULT_INTERVAL_S = 6.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0
    first_suppressed: float = 0.0


@dataclass
class LimitedLog:
    """``log(kind, level, msg, *args)``: log unless ``kind`` is over its rate."""

    logger: logging.Logger
    burst: int = DEFAULT_BURST
    interval_s: float = DEFAULT_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False)

    def log(self, kind: str, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
        """True when the line was written (with the current exception's traceback if asked)."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = _Bucket(float(self.burst), now)
        bucket.tokens = min(
            float(self.burst), bucket.tokens + (now - bucket.updated) / self.interval_s
        )
        bucket.updated = now
        if bucket.tokens < 1:
            if not bucket.suppressed:
                bucket.first_suppressed = now
            bucket.suppressed += 1
            return False
        bucket.tokens -= 1
        if bucket.suppressed:
            self.logger.log(
                level,
                "Suppressed %d similar messages (%s) in the last %.0fs",
                bucket.suppressed,
                kind,
                now - bucket.first_suppressed,
                stacklevel=2,
            )
            bucket.suppressed = 0
        self.logger.log(level, msg, *args, exc_info=exc_info, stacklevel=2)
        return True
