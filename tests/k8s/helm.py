"""The real ``helm`` CLI for the chart tests, built from the Go module proxy into the k8s cache.

``go install helm.sh/helm/v3/cmd/helm@v3.19.0`` (cold: about 2.5 min on 2 idle cores), run by
``make test`` before the suite enters its loopback-only network namespace; inside it nothing is
built (a missing helm is a test FAILURE naming the fix). It shares the testbed's Go module and
build caches (``tests/k8s/build.py``), under ``flock``.

Every helm call gets a private ``HELM_*`` home under the test's directory and the testbed's
kubeconfig, so helm talks only to 127.0.0.1 and never reads the user's config or repositories.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.build import BuildError, _go, _go_env, cache_root, go_executable

HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.19.0"
K8S_MAJOR, K8S_MINOR = "1", "34"  # helm v3.19.0's client-go is v0.34
HELM_TIMEOUT_S = 120.0
CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "pysentry"


def helm_bin_dir() -> Path:
    return cache_root() / f"helm-{HELM_VERSION}"


def helm_path() -> Path:
    return helm_bin_dir() / "helm"


def build_helm() -> Path:
    """Build (or take from the cache) ``helm`` at the pinned version; returns its path."""
    if helm_path().is_file():
        return helm_path()
    go = go_executable()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if helm_path().is_file():
            return helm_path()
        started = time.monotonic()
        print(f"building helm {HELM_VERSION} into {helm_bin_dir()}", file=sys.stderr)
        work = root / "helm-build"
        work.mkdir(exist_ok=True)
        env = _go_env(root)
        env["GOBIN"] = str(helm_bin_dir())
        env["GOFLAGS"] = "-buildvcs=false -trimpath"  # no -mod=mod: there is no go.mod here
        # As helm's own release build: the default Kubernetes version (for `helm template` and
        # `lint`) is that of its client-go, 1.34, not the fallback 1.20.
        ldflags = " ".join(
            [
                "-s -w",
                f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
                *(
                    f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}"
                    for pkg in ("chartutil", "lint/rules")
                    for part in (f"Major={K8S_MAJOR}", f"Minor={K8S_MINOR}")
                ),
            ]
        )
        _go(
            go,
            ["install", "-ldflags", ldflags, f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}"],
            work,
            env,
            f"building helm {HELM_VERSION}",
        )
        if not helm_path().is_file():
            raise BuildError(f"building helm {HELM_VERSION}: no binary at {str(helm_path())!r}")
        print(f"built helm in {time.monotonic() - started:.0f}s", file=sys.stderr)
        return helm_path()


@dataclass(frozen=True, slots=True)
class Helm:
    """``helm`` bound to one kubeconfig and one private home directory."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBE"))}
        env.update(
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
            HOME=str(self.home),
        )
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def template(self, args: Sequence[str] = (), *, namespace: str = "dapr-system") -> list[Any]:
        """The rendered objects of ``charts/pysentry`` (``--include-crds``), parsed."""
        out = self.run(
            ["template", "dapr", str(CHART_DIR), "--namespace", namespace, "--include-crds", *args]
        ).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: Sequence[Any], kind: str, name: str) -> Any:
    """The one rendered object of ``kind`` and ``name`` (AssertionError naming what exists)."""
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(hits) != 1:
        have = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        raise AssertionError(f"expected one {kind}/{name}, found {len(hits)} among {have}")
    return hits[0]


def session_helm(home: Path) -> Helm:
    """The built helm with a private home; a missing build FAILS the test, naming the fix."""
    if not helm_path().is_file():
        import pytest

        pytest.fail(
            f"helm {HELM_VERSION} is not built ({str(helm_path())!r} missing): build it with "
            "network first (`python -m tests.prebuild --build-only`), or run `make test`",
            pytrace=False,
        )
    return Helm(helm_path(), home)
