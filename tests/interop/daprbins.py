"""Build Dapr's own ``sentry`` and ``daprd`` (v1.16.0) and smallstep's ``step`` CLI, cached.

``tests/interop/dapr`` is a Go module that requires ``github.com/dapr/dapr v1.16.0`` (the newest
v1.16 tag the module proxy serves here) and ``github.com/dapr/components-contrib v1.16.0``:

- ``sentry`` is ``go build github.com/dapr/dapr/cmd/sentry``, unchanged;
- ``daprd`` is ``cmd/daprd`` of that module: Dapr's ``cmd/daprd/app.Run()`` built with
  ``-tags stablecomponents``, after registering the alpha ``sqlite`` name resolver (which only
  ``allcomponents`` registers, and ``allcomponents`` needs modules the proxy refuses);
- ``step`` is ``go install github.com/smallstep/cli/cmd/step@v0.21.0`` (for the docs' recipe).

The binaries go to ``$XDG_CACHE_HOME/pysentry-interop/dapr-<digest>`` (default ``~/.cache``);
the digest covers ``go version``, the module's files and the step version. Builds are serialized
across processes with ``flock`` on ``dapr.lock``. ``python -m tests.prebuild`` calls
:func:`build_dapr_binaries` before the suite, which then runs without network: nothing builds
during the tests when the cache is warm. A cold build takes about 9 minutes on 2 cores.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DAPR_GO_DIR = Path(__file__).resolve().parent / "dapr"
GO_FALLBACK = Path("/usr/local/go/bin/go")
DAPR_VERSION = "v1.16.0"
STEP_MODULE = "github.com/smallstep/cli/cmd/step@v0.21.0"
BUILD_TIMEOUT_S = 3600.0  # ~9 min on 2 idle cores; over 25 min seen with the cores shared
KEEP_BUILDS = 2
PROGRAMS = ("sentry", "daprd", "step")


class DaprBuildError(RuntimeError):
    """The Go toolchain is missing, or a build failed (the message has Go's output)."""


@dataclass(frozen=True, slots=True)
class DaprBinaries:
    bin_dir: Path
    build_seconds: float  # 0.0 when taken from the cache

    @property
    def sentry(self) -> Path:
        return self.bin_dir / "sentry"

    @property
    def daprd(self) -> Path:
        return self.bin_dir / "daprd"

    @property
    def step(self) -> Path:
        return self.bin_dir / "step"


def go_executable() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if found is None:
        raise DaprBuildError(
            "Go toolchain not found (looked for `go` on PATH and /usr/local/go/bin/go): the "
            "real-Dapr interop tests need Go >= 1.24 and the Go module proxy; install Go"
        )
    return found


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pysentry-interop"


def source_digest(go: str) -> str:
    h = hashlib.sha256(b"dapr-bins\0" + STEP_MODULE.encode() + b"\0")
    version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    h.update(version.stdout.encode())
    files = [DAPR_GO_DIR / "go.mod", DAPR_GO_DIR / "go.sum", *sorted(DAPR_GO_DIR.rglob("*.go"))]
    for path in files:
        h.update(str(path.relative_to(DAPR_GO_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def _complete(bin_dir: Path) -> bool:
    return all((bin_dir / name).is_file() for name in PROGRAMS)


def cached_dapr_bin_dir() -> Path | None:
    """The cached binaries' directory when they exist for the current sources, else None."""
    try:
        go = go_executable()
    except DaprBuildError:
        return None
    bin_dir = cache_root() / f"dapr-{source_digest(go)}"
    return bin_dir if _complete(bin_dir) else None


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "dapr.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise DaprBuildError(f"{what}: timed out after {BUILD_TIMEOUT_S:.0f}s") from err
    if done.returncode != 0:
        refused = [line for line in done.stderr.splitlines() if "410 Gone" in line or "404" in line]
        hint = f"\nmodules the proxy refused: {refused}" if refused else ""
        raise DaprBuildError(
            f"{what}: failed ({done.returncode}): {' '.join(cmd)}{hint}\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
        )


def _prune(root: Path, keep: int) -> None:
    builds = [p for p in root.glob("dapr-*") if p.is_dir()]
    builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def build_dapr_binaries() -> DaprBinaries:
    """Dapr v1.16.0 ``sentry`` and ``daprd`` and ``step`` v0.21.0: from the cache or built."""
    go = go_executable()
    root = cache_root()
    bin_dir = root / f"dapr-{source_digest(go)}"
    if _complete(bin_dir):
        return DaprBinaries(bin_dir, 0.0)
    with _locked(root):
        if _complete(bin_dir):  # another process built it while we waited for the lock
            return DaprBinaries(bin_dir, 0.0)
        staging = Path(tempfile.mkdtemp(prefix="dapr-build-", dir=root))
        env = dict(os.environ)
        env["GOFLAGS"] = "-mod=mod -buildvcs=false"
        started = time.monotonic()
        try:
            _run(
                [go, "build", "-tags", "stablecomponents", "-o", f"{staging}/", "./cmd/daprd"],
                cwd=DAPR_GO_DIR,
                env=env,
                what=f"go build Dapr {DAPR_VERSION} daprd",
            )
            _run(
                [go, "build", "-o", f"{staging}/", "github.com/dapr/dapr/cmd/sentry"],
                cwd=DAPR_GO_DIR,
                env=env,
                what=f"go build Dapr {DAPR_VERSION} sentry",
            )
            step_env = dict(env, GOBIN=str(staging), GOFLAGS="-buildvcs=false")
            _run([go, "install", STEP_MODULE], cwd=root, env=step_env, what="go install step")
            if not _complete(staging):
                raise DaprBuildError(f"build finished without {PROGRAMS} in {staging}")
            staging.rename(bin_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        elapsed = time.monotonic() - started
        print(f"built Dapr {DAPR_VERSION} binaries in {elapsed:.0f}s: {bin_dir}", file=sys.stderr)
        _prune(root, KEEP_BUILDS)
        return DaprBinaries(bin_dir, elapsed)


if __name__ == "__main__":
    bins = build_dapr_binaries()
    print(bins.bin_dir)
