"""Locate or build what ``bench/vs_go.py`` runs: load generators, the Go echo app, Go Dapr.

- ``wrk``: Debian's package, found on PATH (``apt-get install -y wrk``).
- ``ghz`` and ``vegeta``: ``go install`` at the exact versions below into
  ``$XDG_CACHE_HOME/pysentry-bench/tools-<digest>`` (default ``~/.cache``; the digest covers
  ``go version`` and the module versions).
- ``echo``: ``bench/go/echo`` (standard library only), built into
  ``$XDG_CACHE_HOME/pysentry-bench/echo-<digest>`` (digest of ``go version`` and its sources).
- Go Dapr ``daprd``/``sentry`` v1.16.0: the interop tests' build, reused as is
  (:func:`tests.interop.daprbins.build_dapr_binaries`; cold, about 9 minutes).

Every failure is a :class:`ToolError` whose message names the fix. ``python bench/tools.py``
builds everything and prints the paths.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHO_DIR = ROOT / "bench" / "go" / "echo"
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz@v0.120.0"
VEGETA_MODULE = "github.com/tsenart/vegeta/v12@v12.13.0"
BUILD_TIMEOUT_S = 900.0

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vs_go_procs import enter_netns  # noqa: E402  (bench/ is on the path: scripts run from it)

from tests.interop.daprbins import (  # noqa: E402  (after the sys.path line above)
    DAPR_VERSION,
    DaprBuildError,
    build_dapr_binaries,
)


class ToolError(RuntimeError):
    """A load generator or Go program is missing and could not be built (the fix is named)."""


@dataclass(frozen=True, slots=True)
class Tools:
    wrk: Path
    ghz: Path
    vegeta: Path
    echo: Path
    go_daprd: Path
    go_sentry: Path
    go_version: str

    def versions(self) -> dict[str, str]:
        return {
            "wrk": wrk_version(self.wrk),
            "ghz": GHZ_MODULE.rsplit("@", 1)[1],
            "vegeta": VEGETA_MODULE.rsplit("@", 1)[1],
            "go": self.go_version,
            "dapr": DAPR_VERSION,
        }


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pysentry-bench"


def go_executable() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if found is None:
        raise ToolError(
            "Go toolchain not found (looked for `go` on PATH and /usr/local/go/bin/go): "
            "bench/vs_go.py builds ghz, vegeta, the echo app and Go Dapr with it; install Go 1.24+"
        )
    return found


def go_version(go: str) -> str:
    done = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def wrk_version(wrk: Path) -> str:
    done = subprocess.run([str(wrk), "-v"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [", 1)[0] if first else "unknown"


def find_wrk() -> Path:
    found = shutil.which("wrk")
    if found is None:
        raise ToolError(
            "wrk not found on PATH: bench/vs_go.py drives HTTP load with Debian's wrk; install it "
            "with `apt-get update && apt-get install -y wrk`"
        )
    return Path(found)


def _go(cmd: list[str], *, cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise ToolError(f"{what}: timed out after {BUILD_TIMEOUT_S:.0f}s") from err
    if done.returncode != 0:
        refused = [ln for ln in done.stderr.splitlines() if "410 Gone" in ln or "404" in ln]
        hint = f"; the module proxy refused: {refused}" if refused else ""
        raise ToolError(
            f"{what}: `{' '.join(cmd)}` failed ({done.returncode}){hint}; it needs the Go module "
            f"proxy (GOPROXY={os.environ.get('GOPROXY', 'default')!r}):\n{done.stderr[-4000:]}"
        )


def _digest(go: str, *parts: bytes) -> str:
    h = hashlib.sha256(go_version(go).encode() + b"\0")
    for part in parts:
        h.update(part + b"\0")
    return h.hexdigest()[:20]


def _install(build_dir: Path, names: tuple[str, ...], build: Callable[[Path], None]) -> Path:
    if all((build_dir / n).is_file() for n in names):
        return build_dir
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=build_dir.parent))
    try:
        build(staging)
        missing = [n for n in names if not (staging / n).is_file()]
        if missing:
            raise ToolError(f"build into {staging} finished without {missing}")
        # OSError: another process finished the same build first; its copy is as good.
        with contextlib.suppress(OSError):
            staging.rename(build_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return build_dir


def build_loadgens(go: str) -> tuple[Path, Path]:
    """ghz and vegeta at the pinned versions (cached)."""
    modules = (GHZ_MODULE, VEGETA_MODULE)
    target = cache_root() / f"tools-{_digest(go, *(m.encode() for m in modules))}"

    def build(staging: Path) -> None:
        env = dict(os.environ, GOBIN=str(staging), GOFLAGS="-buildvcs=false")
        for module in modules:
            _go([go, "install", module], cwd=cache_root(), env=env, what=f"go install {module}")

    bin_dir = _install(target, ("ghz", "vegeta"), build)
    return bin_dir / "ghz", bin_dir / "vegeta"


def build_echo(go: str) -> Path:
    """The Go echo app of ``bench/go/echo`` (cached by a digest of its sources)."""
    files = sorted(p for p in ECHO_DIR.rglob("*") if p.suffix in (".go", ".mod"))
    parts = [str(p.relative_to(ECHO_DIR)).encode() + b"\0" + p.read_bytes() for p in files]
    target = cache_root() / f"echo-{_digest(go, *parts)}"

    def build(staging: Path) -> None:
        env = dict(os.environ, GOFLAGS="-buildvcs=false")
        _go(
            [go, "build", "-o", str(staging / "echo"), "."],
            cwd=ECHO_DIR,
            env=env,
            what="go build bench/go/echo",
        )

    return _install(target, ("echo",), build) / "echo"


def ensure_tools() -> Tools:
    """Every tool, found or built; raises :class:`ToolError` naming the fix."""
    wrk = find_wrk()
    go = go_executable()
    cache_root().mkdir(parents=True, exist_ok=True)
    ghz, vegeta = build_loadgens(go)
    echo = build_echo(go)
    try:
        dapr = build_dapr_binaries()
    except DaprBuildError as err:
        raise ToolError(
            f"Go Dapr {DAPR_VERSION} daprd/sentry: {err}; it is the interop tests' build "
            "(`python -m tests.interop.daprbins`, about 9 minutes cold, needs the Go module proxy)"
        ) from err
    return Tools(wrk, ghz, vegeta, echo, dapr.daprd, dapr.sentry, go_version(go))


def netns_flags(ap: argparse.ArgumentParser) -> None:
    """``--host-network``, and the hidden ``--in-netns`` that :func:`tools_on_loopback` adds."""
    ap.add_argument("--host-network", action="store_true", help="do not enter a private netns")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)


def tools_on_loopback(script: str, argv: list[str], args: argparse.Namespace) -> Tools:
    """:func:`ensure_tools`, then (unless ``--host-network``) ``script`` again in a private network
    namespace with only loopback. Exits with status 2 and the reason if either cannot be had."""
    name = f"bench/{Path(script).name}"
    try:
        tools = ensure_tools()
    except ToolError as err:
        print(f"{name}: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    if not args.host_network and not args.in_netns:
        print(f"{name}: {enter_netns(script, argv)}", file=sys.stderr)
        raise SystemExit(2)
    return tools


if __name__ == "__main__":
    try:
        tools = ensure_tools()
    except ToolError as err:
        sys.exit(f"bench/tools.py: {err}")
    for name in ("wrk", "ghz", "vegeta", "echo", "go_daprd", "go_sentry"):
        print(f"{name}: {getattr(tools, name)}")
    print(tools.versions())
