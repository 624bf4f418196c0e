"""Kubernetes fixtures: one real API server per session, a fresh namespace per test.

The binaries come from ``tests/k8s/build.py`` (``make test`` builds them before entering the
offline network namespace); a missing build inside the namespace is a FAILURE that names the fix.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.build import BuildError, build_testbed
from tests.k8s.cluster import apply_dapr_crds
from tests.k8s.sentry import KubeLauncher
from tests.k8s.testbed import Testbed, start_testbed


def non_loopback_interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex() if name != "lo"]


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    others = non_loopback_interfaces()
    if others:
        pytest.fail(
            f"the Kubernetes tests run only inside a network namespace with nothing but loopback "
            f"(found {', '.join(others)}): run them with `make test` or "
            "`python -m tests.prebuild tests/k8s`",
            pytrace=False,
        )
    try:
        binaries = build_testbed()
    except BuildError as err:
        pytest.fail(
            f"Kubernetes testbed: {err}\n(build it with network first: "
            "`python -m tests.k8s.testbed build`, or run the suite with `make test`)",
            pytrace=False,
        )
    bed = start_testbed(binaries, Path(tmp_path_factory.mktemp("kube")))
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture
def namespace(kube: Testbed) -> str:
    """A fresh namespace (they never finish deleting without a controller-manager)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.must("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def dapr_crds(kube: Testbed) -> None:
    apply_dapr_crds(kube)


@pytest.fixture
def kube_sentry(kube: Testbed, dapr_crds: None, tmp_path: Path) -> Iterator[KubeLauncher]:
    launcher = KubeLauncher(kube, tmp_path)
    yield launcher
    launcher.stop_all()
