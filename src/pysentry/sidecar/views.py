"""Counters and histograms shaped like Dapr's OpenCensus views, rendered as Dapr's scrape does.

Dapr records OpenCensus views and exports them with the OpenCensus Prometheus exporter: the
metric name is ``dapr_`` + the view name with ``/`` and ``.`` made ``_`` and **no suffix is
added**, so a count view named ``http/server/request_count`` is the counter
``dapr_http_server_request_count`` (no ``_total``), and there are no ``_created`` series.
``prometheus_client`` would name that counter ``..._request_count_total`` and format bucket
bounds as ``1.0``, so these families render themselves in client_golang's text format: label
pairs sorted by name, series sorted by label values, numbers in Go's ``%g`` shape (``le="1"``,
``le="1.048576e+06"``).

A distribution puts a value equal to a bound in the *next* bucket, as OpenCensus does: with bounds
``1, 2, ...`` a 1 ms request counts toward ``le="2"``, not ``le="1"``.

Recording is a cached child per label tuple (one dict lookup, one add): no lock, the sidecar
records only from its event loop thread.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from decimal import Decimal

#: ``defaultLatencyDistribution`` (``pkg/config/configuration.go``), milliseconds.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300,
    400, 500, 650, 800, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
)  # fmt: skip
#: ``defaultSizeDistribution`` (``pkg/diagnostics/metrics.go``), bytes: 1 KiB .. 4 GiB.
SIZE_BOUNDS: tuple[float, ...] = (
    1 << 10, 2 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20,
    64 << 20, 256 << 20, 1 << 30, 4 << 30,
)  # fmt: skip
#: Past this many label sets a family stops adding new ones (see :meth:`Family.full`).
MAX_SERIES = 10_000


def go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``, as client_golang writes numbers: the shortest
    digits, in ``%e`` form when the exponent is below -4 or at least 6."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # the decimal point sits after `point` digits
    minus = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return minus + digits + "0" * (point - len(digits))
    return f"{minus}{digits[:point]}.{digits[point:]}"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Family:
    """One metric family: name, help, label names; children keyed by label values."""

    kind = ""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        # Label pairs are written sorted by name, as client_golang does.
        self._order = sorted(range(len(self.labels)), key=lambda i: self.labels[i])

    def full(self, size: int) -> bool:
        """A family with :data:`MAX_SERIES` label sets takes no new ones (a scanner hitting
        random paths cannot grow the sidecar without bound); callers fold the excess into a
        label set of their choice."""
        return size >= MAX_SERIES

    def _pairs(self, values: tuple[str, ...]) -> str:
        return ",".join(f'{self.labels[i]}="{escape(values[i])}"' for i in self._order)

    def render(self) -> Iterator[str]:
        raise NotImplementedError

    def header(self) -> str:
        doc = self.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n"


class Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class CounterFamily(Family):
    kind = "counter"

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        super().__init__(name, documentation, labels)
        self.children: dict[tuple[str, ...], Count] = {}

    def child(self, *values: str) -> Count:
        found = self.children.get(values)
        if found is None:
            found = self.children[values] = Count()
        return found

    def render(self) -> Iterator[str]:
        if not self.children:
            return
        yield self.header()
        for values, child in sorted(self.children.items()):
            pairs = self._pairs(values)
            labels = f"{{{pairs}}}" if pairs else ""
            yield f"{self.name}{labels} {child.value}\n"


class Distribution:
    __slots__ = ("bounds", "counts", "sum", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_right(self.bounds, value)] += 1
        self.total += 1
        self.sum += value


class HistogramFamily(Family):
    kind = "histogram"

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: tuple[float, ...]
    ) -> None:
        super().__init__(name, documentation, labels)
        self.bounds = bounds
        self._le = [go_float(b) for b in bounds]
        self.children: dict[tuple[str, ...], Distribution] = {}

    def child(self, *values: str) -> Distribution:
        found = self.children.get(values)
        if found is None:
            found = self.children[values] = Distribution(self.bounds)
        return found

    def render(self) -> Iterator[str]:
        if not self.children:
            return
        yield self.header()
        name = self.name
        for values, child in sorted(self.children.items()):
            pairs = self._pairs(values)
            lead = pairs + "," if pairs else ""
            running = 0
            for le, count in zip(self._le, child.counts, strict=False):
                running += count
                yield f'{name}_bucket{{{lead}le="{le}"}} {running}\n'
            yield f'{name}_bucket{{{lead}le="+Inf"}} {child.total}\n'
            tail = f"{{{pairs}}}" if pairs else ""
            yield f"{name}_sum{tail} {go_float(child.sum)}\n"
            yield f"{name}_count{tail} {child.total}\n"
