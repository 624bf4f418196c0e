"""Build the real Dapr CLI (``github.com/dapr/cli`` v1.16.5), cached.

``tests/interop/daprcli`` is a wrapper Go module that requires ``github.com/dapr/cli v1.16.5``;
the binary is ``go build github.com/dapr/cli`` with the version ldflags of the CLI's Makefile
(``main.version``, ``main.apiVersion``). What the module proxy refuses here (HTTP 403):

- ``github.com/dapr/cli`` v1.16.0 to v1.16.4 (v1.16.5 is the only 1.16 it serves), and its
  ``@v/list``, which ``go install github.com/dapr/cli@v1.16.5`` reads: hence the wrapper module;
- ``github.com/dapr/components-contrib`` v1.16.2 to v1.16.4 (v1.16.5 of the CLI needs v1.16.3):
  the wrapper replaces it with v1.16.1, the newest the proxy serves.

The binary goes to ``$XDG_CACHE_HOME/pysentry-daprcli/<digest>/dapr`` (default ``~/.cache``;
not under ``pysentry-interop``, whose Go-program builds prune every other directory there); the
digest covers ``go version`` and the wrapper's files. Builds are serialized
across processes with ``flock`` on ``daprcli.lock``. ``python -m tests.prebuild`` calls
:func:`build_dapr_cli` before the suite, which then runs without network. A cold build took
9 minutes on 2 busy cores (empty module cache), 52 s with the modules already downloaded.
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

from tests.interop.daprbins import DaprBuildError, go_executable
from tests.interop.daprbins import cache_root as interop_cache_root

CLI_GO_DIR = Path(__file__).resolve().parent / "daprcli"
CLI_VERSION = "1.16.5"
BUILD_TIMEOUT_S = 1200.0
KEEP_BUILDS = 2


@dataclass(frozen=True, slots=True)
class DaprCli:
    dapr: Path
    build_seconds: float  # 0.0 when taken from the cache


def cache_root() -> Path:
    return interop_cache_root().parent / "pysentry-daprcli"


def source_digest(go: str) -> str:
    h = hashlib.sha256(b"dapr-cli\0" + CLI_VERSION.encode() + b"\0")
    version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    h.update(version.stdout.encode())
    for path in sorted(p for p in CLI_GO_DIR.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "daprcli.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prune(root: Path, keep: int) -> None:
    builds = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith("build-")]
    builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _build(go: str, out: Path) -> None:
    env = dict(os.environ, GOFLAGS="-mod=mod -buildvcs=false")
    ldflags = f"-X main.version={CLI_VERSION} -X main.apiVersion=1.0"
    cmd = [go, "build", "-ldflags", ldflags, "-o", str(out), "github.com/dapr/cli"]
    try:
        done = subprocess.run(
            cmd, cwd=CLI_GO_DIR, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise DaprBuildError(
            f"go build Dapr CLI {CLI_VERSION}: timed out after {BUILD_TIMEOUT_S:.0f}s"
        ) from err
    if done.returncode != 0:
        refused = [line for line in done.stderr.splitlines() if "403" in line or "410" in line]
        hint = f"\nmodules the proxy refused: {sorted(set(refused))[:10]}" if refused else ""
        raise DaprBuildError(
            f"go build Dapr CLI {CLI_VERSION}: failed ({done.returncode}): {' '.join(cmd)}"
            f"{hint}\n{done.stderr[-6000:]}"
        )


def build_dapr_cli() -> DaprCli:
    """The real ``dapr`` CLI v1.16.5: from the cache, or built (needs the Go module proxy)."""
    go = go_executable()
    root = cache_root()
    bin_dir = root / source_digest(go)
    if (bin_dir / "dapr").is_file():
        return DaprCli(bin_dir / "dapr", 0.0)
    with _locked(root):
        if (bin_dir / "dapr").is_file():  # another process built it while we waited
            return DaprCli(bin_dir / "dapr", 0.0)
        staging = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        started = time.monotonic()
        try:
            _build(go, staging / "dapr")
            staging.rename(bin_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        elapsed = time.monotonic() - started
        print(f"built Dapr CLI {CLI_VERSION} in {elapsed:.0f}s: {bin_dir}", file=sys.stderr)
        _prune(root, KEEP_BUILDS)
        return DaprCli(bin_dir / "dapr", elapsed)


if __name__ == "__main__":
    print(build_dapr_cli().dapr)
