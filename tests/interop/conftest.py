"""Go interop harness: build the Go programs once per session, run them against real pysentry.

The Go programs use Dapr's own code (module ``github.com/dapr/dapr`` v1.16.0). The LIGHT build
(fixture ``go_bins``/``go_bins_light``) uses Dapr's generated protos with go-spiffe exactly as
``pkg/security`` does; the FULL build (``go_bins_full``, tests marked ``interop_full``, opt-in)
runs ``pkg/security`` itself. See ``docs/interop.md``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Generator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import cluster  # noqa: F401  (one Cluster fixture for e2e and interop)
from tests.interop.daprbins import BUILD_TIMEOUT_S as DAPR_BUILD_TIMEOUT_S
from tests.interop.daprbins import (
    DaprBinaries,
    DaprBuildError,
    build_dapr_binaries,
    cached_dapr_bin_dir,
)
from tests.interop.goprograms import BUILD_TIMEOUT_S, GoBinaries, build_go_binaries, cached_bin_dir

SENTRY_START_S = 20.0


@pytest.fixture(scope="session")
def go_bins_light() -> GoBinaries:
    return build_go_binaries("light")


@pytest.fixture(scope="session")
def go_bins_full() -> GoBinaries:
    return build_go_binaries("full")


@pytest.fixture(scope="session")
def dapr_bins() -> DaprBinaries:
    """Dapr v1.16.0's own ``sentry`` and ``daprd``, and ``step`` (``python -m tests.prebuild``
    builds them before the suite; a missing Go toolchain or a refused module FAILS)."""
    try:
        return build_dapr_binaries()
    except DaprBuildError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def go_bins(go_bins_light: GoBinaries) -> GoBinaries:
    """The default (LIGHT) build."""
    return go_bins_light


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A cold Go build can take minutes: give the first interop test of each flavor room for it.

    Runs last, so ``items`` is what ``-m`` selected; a test marked ``interop_full`` uses the
    FULL build, every other one the LIGHT build.
    """
    here = Path(__file__).resolve().parent
    seen: set[str] = set()
    for item in items:
        if here not in Path(str(item.path)).resolve().parents:
            continue
        if "dapr_bins" in getattr(item, "fixturenames", ()):
            if "dapr" not in seen and cached_dapr_bin_dir() is None:
                item.add_marker(pytest.mark.timeout(DAPR_BUILD_TIMEOUT_S + 120))
            seen.add("dapr")
            continue
        flavor = "full" if item.get_closest_marker("interop_full") else "light"
        if flavor in seen:
            continue
        seen.add(flavor)
        if cached_bin_dir(flavor) is None:
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S + 120))


# --- a real pysentry sentry --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SentryProc:
    proc: subprocess.Popen[bytes]
    port: int
    creds: Path
    log: Path
    args: Sequence[str] = field(default_factory=tuple)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def anchors_file(self) -> Path:
        return self.creds / "ca.crt"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sentry(workdir: Path, creds: Path, *extra: str) -> SentryProc:
    """``python -m pysentry.sentry.main`` on free loopback ports; returns once /healthz is 200."""
    port, healthz = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "pysentry.sentry.main",
        "--issuer-credentials",
        str(creds),
        "--listen-address",
        "127.0.0.1",
        "--port",
        str(port),
        "--healthz-port",
        str(healthz),
        "--metrics-port",
        str(free_port()),
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k != "NAMESPACE" and not k.startswith("DAPR_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = workdir / f"sentry-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    handle = SentryProc(proc, port, creds, log, tuple(cmd))
    deadline = time.monotonic() + SENTRY_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sentry exited with {proc.returncode}:\n{handle.text()}")
        with suppress(OSError, ValueError):
            url = f"http://127.0.0.1:{healthz}/healthz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return handle
        time.sleep(0.05)
    handle.stop()
    raise AssertionError(f"sentry not healthy after {SENTRY_START_S}s:\n{handle.text()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call-phase report on the item so fixtures can dump process logs on failure."""
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
