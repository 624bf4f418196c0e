"""Build and run the Go interop programs in ``tests/interop/go`` (see ``docs/interop.md``).

Two builds of the same programs: LIGHT (default; Dapr's generated protos, grpc and go-spiffe
only) and FULL (``-tags daprfull``: Dapr's own ``pkg/security`` provider; slow to compile cold).
Binaries are cached in ``$XDG_CACHE_HOME/pysentry-interop/<digest>-<flavor>`` (default
``~/.cache``), keyed by a digest of the Go sources, ``go.mod``/``go.sum``, ``go version`` and the
flavor. A missing Go toolchain is a test FAILURE, not a skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

GO_DIR = Path(__file__).resolve().parent / "go"
PROGRAMS = ("sentry-client", "invoke-server", "invoke-client")
GO_FALLBACK = Path("/usr/local/go/bin/go")
BUILD_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 60.0
KEEP_BUILDS = 4  # digest directories kept in the cache (light ~52 MB, full ~170 MB)
FLAVORS = ("light", "full")
BUILD_TAGS = {"light": (), "full": ("-tags", "daprfull")}


# --- building ----------------------------------------------------------------------------------
def go_executable() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if found is None:
        pytest.fail(
            "Go toolchain not found (looked for `go` on PATH and /usr/local/go/bin/go): the Go "
            "interop tests need Go >= 1.24 and the Go module proxy; install Go, do not skip",
            pytrace=False,
        )
    return found


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pysentry-interop"


def _go_files() -> list[Path]:
    files = [GO_DIR / "go.mod", GO_DIR / "go.sum"]
    files += sorted(p for p in GO_DIR.rglob("*.go") if "bin" not in p.relative_to(GO_DIR).parts)
    return files


def source_digest(go: str, flavor: str) -> str:
    h = hashlib.sha256(flavor.encode() + b"\0")
    version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    h.update(version.stdout.encode())
    for path in _go_files():
        h.update(str(path.relative_to(GO_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def _complete(bin_dir: Path) -> bool:
    return all((bin_dir / name).is_file() for name in PROGRAMS)


def _bin_dir(go: str, flavor: str) -> Path:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown Go build flavor {flavor!r}: expected one of {FLAVORS}")
    return cache_root() / f"{source_digest(go, flavor)}-{flavor}"


def cached_bin_dir(flavor: str) -> Path | None:
    """The cached binaries' directory when they exist for the current sources, else None."""
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if go is None:
        return None
    bin_dir = _bin_dir(go, flavor)
    return bin_dir if _complete(bin_dir) else None


def _prune(root: Path, keep: int) -> None:
    """Drop all but the ``keep`` newest finished builds of these programs (staging ``build-*``
    dirs, and other builders' directories such as ``dapr-*``, are left)."""
    builds = [
        p
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith("build-")
        and p.name.endswith(tuple(f"-{f}" for f in FLAVORS))
    ]
    builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class GoBinaries:
    bin_dir: Path
    build_seconds: float  # 0.0 when taken from the cache
    go_version: str
    flavor: str  # "light" or "full"

    def path(self, program: str) -> Path:
        return self.bin_dir / program


def build_go_binaries(flavor: str = "light") -> GoBinaries:
    """Build (or take from the cache) the LIGHT or FULL set of the three programs."""
    go = go_executable()
    version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    bin_dir = _bin_dir(go, flavor)
    if _complete(bin_dir):
        return GoBinaries(bin_dir, 0.0, version.stdout.strip(), flavor)
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=bin_dir.parent))
    env = dict(os.environ)
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [go, "build", *BUILD_TAGS[flavor], "-o", f"{staging}/", "./cmd/..."],
            cwd=GO_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"go build ({flavor}) timed out after {BUILD_TIMEOUT_S:.0f}s: {err.stderr!r}")
    elapsed = time.monotonic() - started
    if done.returncode != 0 or not _complete(staging):
        shutil.rmtree(staging, ignore_errors=True)
        rc = done.returncode
        pytest.fail(f"go build ({flavor}) failed ({rc}):\n{done.stdout}\n{done.stderr}")
    try:
        staging.rename(bin_dir)
    except OSError:  # another session won the race; its binaries are as good
        shutil.rmtree(staging, ignore_errors=True)
    print(f"built {flavor} Go interop programs in {elapsed:.1f}s into {bin_dir}", file=sys.stderr)
    _prune(bin_dir.parent, keep=KEEP_BUILDS)
    return GoBinaries(bin_dir, elapsed, version.stdout.strip(), flavor)


# --- running -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GoRun:
    returncode: int
    result: dict[str, Any]
    stderr: str

    @property
    def error(self) -> dict[str, str]:
        err = self.result.get("error")
        assert isinstance(err, dict), f"expected an error result, got {self.result}\n{self.stderr}"
        return err


def run_go(
    bins: GoBinaries,
    program: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = RUN_TIMEOUT_S,
) -> GoRun:
    """Run a Go program to completion; its stdout is one JSON line (result or ``{"error"}``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "NAMESPACE"))}
    full_env.update(env or {})
    done = subprocess.run(
        [str(bins.path(program)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"{program} printed nothing (rc={done.returncode}):\n{done.stderr}"
    return GoRun(done.returncode, json.loads(lines[-1]), done.stderr)


def expect_ok(run: GoRun) -> dict[str, Any]:
    assert run.returncode == 0, f"rc={run.returncode} {run.result}\n{run.stderr[-3000:]}"
    return run.result


@dataclass
class GoServer:
    proc: subprocess.Popen[str]
    address: str
    spiffe_id: str
    build: str  # "light" or "full"
    log: Path

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def go_invoke_server(
    bins: GoBinaries, tmp: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[GoServer]:
    """Start ``invoke-server`` and wait for its ready line; SIGTERM it afterwards."""
    log = tmp / f"invoke-server-{time.monotonic_ns()}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "NAMESPACE"))}
    full_env.update(env or {})
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(bins.path("invoke-server")), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=full_env,
        )
    try:
        assert proc.stdout is not None
        line = _readline(proc, timeout=30)
        ready = json.loads(line)
        assert "address" in ready, f"invoke-server failed: {ready}\n{log.read_text()}"
        yield GoServer(proc, ready["address"], ready["spiffe_id"], ready["build"], log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no ready line from pid {proc.pid} within {timeout}s")
    line = proc.stdout.readline()
    assert line, f"process {proc.pid} exited ({proc.wait()}) without a ready line"
    return line
