"""Dapr-shaped metric families: Go number shapes, OpenCensus buckets, the text format."""

from __future__ import annotations

import time

import pytest

from pysentry.sidecar.http_labels import http_path_label
from pysentry.sidecar.metrics import SidecarMetrics
from pysentry.sidecar.views import MAX_SERIES, CounterFamily, HistogramFamily, go_float

# strconv.FormatFloat(v, 'g', -1, 64), printed by Go 1.x for each value.
GO_G = {
    1.0: "1",
    2.5: "2.5",
    1000.0: "1000",
    100000.0: "100000",
    float(1 << 20): "1.048576e+06",
    float(1 << 30): "1.073741824e+09",
    float(4 << 30): "4.294967296e+09",
    0.001: "0.001",
    0.0001: "0.0001",
    0.00001: "1e-05",
    123456.0: "123456",
    1234567.0: "1.234567e+06",
    -3.0: "-3",
    1e21: "1e+21",
    0.0: "0",
    float("inf"): "+Inf",
}


@pytest.mark.parametrize(("value", "text"), GO_G.items())
def test_go_float_matches_go(value: float, text: str) -> None:
    assert go_float(value) == text


def test_histogram_counts_a_value_on_a_bound_in_the_next_bucket() -> None:
    family = HistogramFamily("x_ms", "help", ("app_id",), (1, 2, 5))
    child = family.child("a")
    for v in (0, 1, 1, 4, 9):
        child.observe(v)
    text = "".join(family.render())
    assert text == (
        "# HELP x_ms help\n# TYPE x_ms histogram\n"
        'x_ms_bucket{app_id="a",le="1"} 1\n'
        'x_ms_bucket{app_id="a",le="2"} 3\n'
        'x_ms_bucket{app_id="a",le="5"} 4\n'
        'x_ms_bucket{app_id="a",le="+Inf"} 5\n'
        'x_ms_sum{app_id="a"} 15\n'
        'x_ms_count{app_id="a"} 5\n'
    )


def test_counter_sorts_label_pairs_and_series_and_escapes() -> None:
    family = CounterFamily("c", "h", ("z", "a"))
    family.child("1", 'q"\\\n').inc()
    family.child("0", "b").inc()
    family.child("0", "b").inc()
    assert list(family.render())[1:] == [
        'c{a="b",z="0"} 2\n',
        'c{a="q\\"\\\\\\n",z="1"} 1\n',
    ]
    assert list(CounterFamily("empty", "h", ("a",)).render()) == []


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1.0/invoke/b/method/orders/1", "/v1.0/invoke/b/method/orders/1"),
        ("/v1.0/state/store/key1", "/v1.0/state/store"),
        ("/v1.0/secrets/vault/name", "/v1.0/secrets/vault"),
        ("/v1.0/actors/Demo/42/method/m", "/v1.0/actors/Demo/{id}/method"),
        ("/actors/Demo/42/method/m", "actors/Demo/{id}/method/m"),
        ("/v1.0-alpha1/workflows/dapr/inst1", "/v1.0-alpha1/workflows/dapr/{instanceId}"),
        ("/v1.0-alpha1/workflows/dapr/wf/start", "/v1.0-alpha1/workflows/dapr/wf/start"),
        (
            "/v1.0-alpha1/workflows/dapr/i1/raiseEvent/ev",
            "/v1.0-alpha1/workflows/dapr/{instanceId}/raiseEvent/{eventName}",
        ),
        ("/v1.0/healthz", "/v1.0/healthz"),
        ("", ""),
    ],
)
def test_http_path_label_is_daprs_legacy_conversion(path: str, label: str) -> None:
    assert http_path_label(path) == label


def test_http_series_stop_growing_at_the_limit() -> None:
    m = SidecarMetrics("a")
    start = time.perf_counter()
    for i in range(MAX_SERIES + 5):
        m.http_served("GET", f"/p{i}", 200, 0, 0, start)
    labels = {values[2] for values in m.http_request_count.children}
    assert len(labels) == MAX_SERIES + 1
    assert m.http_request_count.children[("a", "GET", "", "200")].value == 5


def test_scrape_has_no_created_series_and_sorted_families() -> None:
    m = SidecarMetrics("a")
    m.security.initialized()
    m.request_sent("b")
    m.http_served("POST", "/v1.0/invoke/b/method/x", 200, 10, 2, time.perf_counter())
    text = m.exposition().decode()
    assert "_created" not in text
    assert 'dapr_runtime_mtls_init_total{app_id="a"} 1\n' in text
    assert "# TYPE dapr_runtime_mtls_init_total counter\n" in text
    assert (
        'dapr_runtime_service_invocation_req_sent_total{app_id="a",dst_app_id="b",type="unary"} 1'
        in text
    )
    types = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == sorted(types)
