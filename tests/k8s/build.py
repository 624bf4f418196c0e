"""Build ``kube-apiserver``, ``etcd`` and ``kubectl`` (Go module proxy, pinned) into a cache.

``k8s.io/kubernetes`` replaces its staging modules with ``./staging/...`` paths, so it cannot be
``go install``-ed. We write a throwaway module that requires it (and etcd) at exact versions and
replaces every staging module with its published ``v0.X.Y`` (except ``k8s.io/sample-*``, which are
not on the proxy), then ``go build`` all three (``kubectl`` is ``k8s.io/kubernetes/cmd/kubectl``
of the same module graph, with the same version ``-ldflags``). See ``docs/kubernetes.md`` ("The
testbed").

The cache (``$PYSENTRY_K8S_CACHE``, default ``~/.cache/pysentry/k8s``) holds the Go module and build
caches and ``bin-<digest>/{kube-apiserver,etcd,kubectl}``. Builds are serialized with ``flock``; a
warm cache builds nothing, and a cache from before ``kubectl`` was added builds only ``kubectl``.
Cold: about 560 CPU-seconds, 5-7 min on 2 idle cores, 1.8 GB peak RAM.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

KUBERNETES_VERSION = "v1.34.3"
STAGING_VERSION = "v0.34.3"
ETCD_VERSION = "v3.6.4"
DAPR_MODULE = "github.com/dapr/dapr"
DAPR_VERSION = "v1.16.0"  # its module zip carries the Helm chart and the CRDs (charts/dapr)
CACHE_ENV = "PYSENTRY_K8S_CACHE"
SERVER_PROGRAMS = ("kube-apiserver", "etcd")
PROGRAMS = (*SERVER_PROGRAMS, "kubectl")
BUILD_TIMEOUT_S = 3600.0  # the testbed took 30 min with the cores shared (cold cache)
GO_FALLBACK = Path("/usr/local/go/bin/go")
_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", re.MULTILINE)
_ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


class BuildError(RuntimeError):
    """The testbed binaries could not be built (the message names the step and its output)."""


@dataclass(frozen=True, slots=True)
class TestbedBinaries:
    __test__: ClassVar[bool] = False  # not a pytest test class
    bin_dir: Path
    build_seconds: float  # 0.0 when taken from the cache

    @property
    def apiserver(self) -> Path:
        return self.bin_dir / "kube-apiserver"

    @property
    def etcd(self) -> Path:
        return self.bin_dir / "etcd"

    @property
    def kubectl(self) -> Path:
        """``kubectl`` at the testbed's version (for tests that run the docs' commands)."""
        return self.bin_dir / "kubectl"


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "pysentry" / "k8s"


def go_executable() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if found is None:
        raise BuildError(
            "Go toolchain not found (looked for `go` on PATH and /usr/local/go/bin/go): the "
            "Kubernetes testbed builds kube-apiserver and etcd with Go >= 1.24; install Go"
        )
    return found


def _digest(go: str) -> str:
    version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    pins = f"{KUBERNETES_VERSION} {STAGING_VERSION} {ETCD_VERSION} {version.stdout.strip()}"
    return hashlib.sha256(pins.encode()).hexdigest()[:16]


def bin_dir_for(go: str) -> Path:
    return cache_root() / f"bin-{_digest(go)}"


def cached_binaries() -> TestbedBinaries | None:
    """The cached binaries when they exist for the pinned versions, else None (never builds)."""
    try:
        bin_dir = bin_dir_for(go_executable())
    except BuildError:
        return None
    return TestbedBinaries(bin_dir, 0.0) if _complete(bin_dir) else None


def _complete(bin_dir: Path, programs: tuple[str, ...] = PROGRAMS) -> bool:
    return all((bin_dir / name).is_file() for name in programs)


def _go_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GOMODCACHE=str(root / "gomod"),
        GOCACHE=str(root / "gobuild"),
        GOPATH=str(root / "gopath"),
        GOFLAGS="-mod=mod -buildvcs=false",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        GOPROXY=os.environ.get("GOPROXY", "https://proxy.golang.org,direct"),
    )
    return env


def _go(go: str, args: list[str], cwd: Path, env: dict[str, str], step: str) -> str:
    try:
        done = subprocess.run(
            [go, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise BuildError(f"{step}: timed out after {BUILD_TIMEOUT_S:.0f}s") from err
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise BuildError(f"{step}: `go {' '.join(args)}` exited {done.returncode}:\n{tail}")
    return done.stdout


def _staging_modules(go: str, work: Path, env: dict[str, str]) -> list[str]:
    out = _go(
        go,
        ["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
        work,
        env,
        "reading k8s.io/kubernetes' go.mod",
    )
    gomod = Path(json.loads(out)["GoMod"]).read_text()
    names = sorted(set(_STAGING_REPLACE.findall(gomod)))
    return [n for n in names if not n.startswith("k8s.io/sample-")]


def _write_module(work: Path, staging: list[str]) -> None:
    lines = [
        "module pysentry.test/k8stestbed",
        "",
        "go 1.24.0",
        "",
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}",
        f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}",
        "",
    ]
    lines += [f"replace {name} => {name} {STAGING_VERSION}" for name in staging]
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    (work / "etcd").mkdir(exist_ok=True)
    (work / "etcd" / "main.go").write_text(_ETCD_MAIN)


def _ldflags() -> str:
    minor = KUBERNETES_VERSION.split(".")[1]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return "-s -w " + " ".join(flags)


def _prepare_module(go: str, root: Path, env: dict[str, str]) -> Path:
    """The throwaway module requiring the pinned Kubernetes and etcd (its go.sum resolved)."""
    work = root / "module"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "go.mod").write_text("module pysentry.test/k8stestbed\n\ngo 1.24.0\n")
    _write_module(work, _staging_modules(go, work, env))
    _go(
        go,
        [
            "get",
            f"k8s.io/kubernetes@{KUBERNETES_VERSION}",
            f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}",
        ],
        work,
        env,
        "resolving the pinned module graph",
    )
    return work


def _build_kubectl(go: str, work: Path, env: dict[str, str], out: Path) -> None:
    _go(
        go,
        [
            "build",
            "-trimpath",
            "-ldflags",
            _ldflags(),
            "-o",
            str(out),
            "k8s.io/kubernetes/cmd/kubectl",
        ],
        work,
        env,
        "building kubectl",
    )


def _build(go: str, root: Path, bin_dir: Path) -> None:
    env = _go_env(root)
    work = _prepare_module(go, root, env)
    staging = root / f"staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    ld = _ldflags()
    _go(
        go,
        [
            "build",
            "-trimpath",
            "-ldflags",
            ld,
            "-o",
            str(staging / "kube-apiserver"),
            "k8s.io/kubernetes/cmd/kube-apiserver",
        ],
        work,
        env,
        "building kube-apiserver",
    )
    _go(
        go,
        ["build", "-trimpath", "-ldflags", "-s -w", "-o", str(staging / "etcd"), "./etcd"],
        work,
        env,
        "building etcd",
    )
    _build_kubectl(go, work, env, staging / "kubectl")
    shutil.rmtree(bin_dir, ignore_errors=True)
    staging.rename(bin_dir)


def _add_kubectl(go: str, root: Path, bin_dir: Path) -> None:
    """A cache built before kubectl was added: build only kubectl, next to the others."""
    env = _go_env(root)
    work = _prepare_module(go, root, env)
    partial = bin_dir / f".kubectl-{os.getpid()}"
    _build_kubectl(go, work, env, partial)
    partial.rename(bin_dir / "kubectl")


def dapr_chart_dir() -> Path:
    """``charts/dapr`` of Dapr's module (downloaded by :func:`build_testbed`; read-only)."""
    return cache_root() / "gomod" / f"{DAPR_MODULE}@{DAPR_VERSION}" / "charts" / "dapr"


def _ensure_dapr_module(go: str, root: Path) -> None:
    if (dapr_chart_dir() / "crds" / "configuration.yaml").is_file():
        return
    work = root / "module"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "go.mod").exists():
        (work / "go.mod").write_text("module pysentry.test/k8stestbed\n\ngo 1.24.0\n")
    _go(
        go,
        ["mod", "download", f"{DAPR_MODULE}@{DAPR_VERSION}"],
        work,
        _go_env(root),
        f"downloading {DAPR_MODULE}@{DAPR_VERSION} (Dapr's chart and CRDs)",
    )


def build_testbed() -> TestbedBinaries:
    """Build (or take from the cache) kube-apiserver, etcd and kubectl at the pinned versions."""
    go = go_executable()
    root = cache_root()
    bin_dir = bin_dir_for(go)
    if _complete(bin_dir) and dapr_chart_dir().is_dir():
        return TestbedBinaries(bin_dir, 0.0)
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be running: wait for it
        _ensure_dapr_module(go, root)
        if _complete(bin_dir):
            return TestbedBinaries(bin_dir, 0.0)
        started = time.monotonic()
        if _complete(bin_dir, SERVER_PROGRAMS):
            print(f"building kubectl {KUBERNETES_VERSION} into {bin_dir}", file=sys.stderr)
            _add_kubectl(go, root, bin_dir)
        else:
            print(
                f"building kube-apiserver and kubectl {KUBERNETES_VERSION} and etcd "
                f"{ETCD_VERSION} into {root} (cold: about 7 min and 1.8 GB RAM on 2 cores)",
                file=sys.stderr,
            )
            _build(go, root, bin_dir)
        elapsed = time.monotonic() - started
        print(f"built the Kubernetes testbed in {elapsed:.0f}s", file=sys.stderr)
        return TestbedBinaries(bin_dir, elapsed)
