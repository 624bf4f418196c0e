"""``make test``'s offline step: a private network namespace, or a clear stop (no fallback)."""

from __future__ import annotations

from tests.prebuild import builders, check_netns
from tests.unprivileged import run_unprivileged


def test_without_the_right_to_unshare_the_run_stops_with_the_fix() -> None:
    def attempt() -> str:
        try:
            check_netns()
        except SystemExit as stop:
            return str(stop.code)
        return "entered a network namespace"

    code, text = run_unprivileged(attempt)
    assert code == 0, text
    assert text.startswith("make test: cannot enter a private network namespace (`unshare "), text
    assert "run it as root or with CAP_SYS_ADMIN and CAP_NET_ADMIN" in text


def test_every_cache_is_built_before_the_offline_run() -> None:
    names = [name for name, _ in builders(["-q"])]
    assert names[:2] == [
        "Go interop programs (light)",
        "Kubernetes testbed (kube-apiserver, etcd, kubectl)",
    ]
    assert "Go interop programs (full)" in [n for n, _ in builders(["-m", "interop_full"])]
