"""``make test``: build every cache the suite needs (with network), then run pytest offline.

::

    python -m tests.prebuild [pytest args...]     # build, then pytest inside a private netns
    python -m tests.prebuild --build-only          # only build the caches

Step 1 needs the package registries (the Go module proxy). Step 2 runs pytest inside a new network
namespace that has only loopback (``unshare --net``, then ``ip link set lo up``), so nothing a test
starts (the Kubernetes API server included) can reach anything but 127.0.0.1/::1. Entering the
namespace needs root (or CAP_SYS_ADMIN); when that fails we stop with a clear error rather than
run the suite with the network up.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

NETNS_SCRIPT = 'ip link set lo up && exec "$0" "$@"'


def _interop_light() -> object:
    from tests.interop.goprograms import build_go_binaries

    return build_go_binaries("light")


def _interop_full() -> object:
    from tests.interop.goprograms import build_go_binaries

    return build_go_binaries("full")


def _k8s_testbed() -> object:
    from tests.k8s.build import build_testbed

    return build_testbed()


def _helm() -> object:
    from tests.k8s.helm import build_helm

    return build_helm()


def _dapr_binaries() -> object:
    module = importlib.import_module("tests.interop.daprbins")
    return module.build_dapr_binaries()


def _dapr_cli() -> object:
    from tests.interop.daprcli import build_dapr_cli

    return build_dapr_cli()


def builders(pytest_args: Sequence[str]) -> list[tuple[str, Callable[[], object]]]:
    """Every cache the suite needs, in build order. Add yours here (name, zero-arg builder)."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("Go interop programs (light)", _interop_light),
        ("Kubernetes testbed (kube-apiserver, etcd, kubectl)", _k8s_testbed),
    ]
    if any("interop_full" in arg for arg in pytest_args):
        steps.append(("Go interop programs (full)", _interop_full))
    # --- Builders owned by other parts of the suite go below this line. ---
    steps.append(("helm (charts/pysentry tests)", _helm))
    # Go Dapr binaries (daprd, sentry from dapr/dapr) for the Dapr interop tests, when present:
    if importlib.util.find_spec("tests.interop.daprbins") is not None:
        steps.append(("Go Dapr binaries", _dapr_binaries))
    # The real Dapr CLI (github.com/dapr/cli v1.16.5) for tests/interop/test_real_dapr_cli.py:
    steps.append(("Dapr CLI", _dapr_cli))
    return steps


#: Builders whose name starts with one of these run in the second lane, next to the others:
#: the Kubernetes pieces have caches of their own, so the two lanes never wait on each other's
#: module downloads, and a cold cache (CI) builds in the time of the longer lane.
_SECOND_LANE = ("Kubernetes testbed", "helm")


def _run_lane(steps: Sequence[tuple[str, Callable[[], object]]], failures: list[str]) -> None:
    for name, build in steps:
        started = time.monotonic()
        print(f"prebuild: {name} ...", file=sys.stderr, flush=True)
        try:
            build()
        except BaseException as err:  # pytest.fail() raises a BaseException subclass
            failures.append(f"prebuild: {name}: build failed: {err}")
            return
        print(f"prebuild: {name}: ready in {time.monotonic() - started:.1f}s", file=sys.stderr)


def build_all(pytest_args: Sequence[str]) -> None:
    steps = builders(pytest_args)
    second = [s for s in steps if s[0].startswith(_SECOND_LANE)]
    first = [s for s in steps if s not in second]
    failures: list[str] = []
    lane = threading.Thread(target=_run_lane, args=(second, failures), daemon=True)
    lane.start()
    try:
        _run_lane(first, failures)
        lane.join()
    except KeyboardInterrupt:
        sys.exit("prebuild: interrupted")
    if failures:
        sys.exit("\n".join(failures))


def check_netns() -> None:
    """Fail clearly when a private network namespace cannot be entered."""
    try:
        probe = subprocess.run(
            ["unshare", "--net", "sh", "-c", "ip link set lo up"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError as err:
        sys.exit(
            f"make test: {err.filename!r} not found: the suite runs inside a private network "
            "namespace (unshare from util-linux, ip from iproute2); install them"
        )
    if probe.returncode != 0:
        sys.exit(
            "make test: cannot enter a private network namespace (`unshare --net` then "
            f"`ip link set lo up` failed: {probe.stderr.strip()!r}): the suite must run with "
            "only loopback (the Kubernetes API server can dial Service IPs); run it as root or "
            "with CAP_SYS_ADMIN and CAP_NET_ADMIN"
        )


def run_offline(pytest_args: Sequence[str]) -> None:
    """Replace this process with pytest inside a fresh network namespace that has only ``lo``."""
    check_netns()
    argv = [
        "unshare",
        "--net",
        "sh",
        "-c",
        NETNS_SCRIPT,
        sys.executable,
        "-m",
        "pytest",
        *pytest_args,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    build_only = "--build-only" in args
    args = [a for a in args if a != "--build-only"]
    build_all(args)
    if not build_only:
        run_offline(args)


if __name__ == "__main__":
    main()
