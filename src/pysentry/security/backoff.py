"""Pauses between a Sentry client's attempts.

After a failure Dapr retries (UNAVAILABLE, timeouts, connection errors), the pause is Dapr's:
50 ms +-10% (:func:`retry_pause`). After RESOURCE_EXHAUSTED, Sentry shedding load, the pause is
exponential with full jitter (:func:`shed_pause`): sidecars refused together come back spread out,
and each one waits longer the longer Sentry stays overloaded.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

Random = Callable[[], float]
"""A uniform number in [0, 1): ``random.random``, or a fixed sequence in tests."""

RETRY_BACKOFF = timedelta(milliseconds=50)
SHED_BACKOFF = timedelta(seconds=2)
"""Ceiling of the first pause after RESOURCE_EXHAUSTED; it doubles after each one in a row."""
SHED_BACKOFF_MAX = timedelta(seconds=10)
MIN_SHED_PAUSE_S = 0.01
MAX_SHED_RETRIES = 64
"""A bound on retries after RESOURCE_EXHAUSTED, whatever the clock says."""


def retry_pause(rand: Random = random.random, *, base: timedelta = RETRY_BACKOFF) -> float:
    """Seconds to wait before the next attempt: ``base`` +-10% (go-grpc-middleware's default)."""
    return base.total_seconds() * (0.9 + 0.2 * rand())


def shed_pause(
    sheds: int,
    rand: Random = random.random,
    *,
    base: timedelta = SHED_BACKOFF,
    cap: timedelta = SHED_BACKOFF_MAX,
) -> float:
    """Seconds to wait after the ``sheds``-th RESOURCE_EXHAUSTED in a row (1-based).

    Uniform in ``[0, min(cap, base * 2**(sheds-1))]``, and at least 10 ms.
    """
    ceiling = min(cap.total_seconds(), base.total_seconds() * 2.0 ** min(sheds - 1, 30))
    return max(MIN_SHED_PAUSE_S, ceiling * rand())
