"""The pieces the ``dapr ... -k`` test modules share: a private API server per module, and the
``dapr`` CLI run as a user runs it (a subprocess with ``HOME`` and ``KUBECONFIG`` set), one at a
time, side by side, or batched in one process (:mod:`tests.k8s.clibatch`).

A module gets its own API server when what the CLI looks up is cluster-wide (the one
``daprsystem``, the control plane's workloads in any namespace): the session's server holds what
other modules leave behind. ``bed = private_testbed("name")`` in a module defines its ``bed``.
:func:`workload` builds a control-plane Deployment or StatefulSet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli.conftest import Result as _Result
from tests.k8s.build import build_testbed
from tests.k8s.cluster import apply_dapr_crds
from tests.k8s.conftest import non_loopback_interfaces
from tests.k8s.testbed import Testbed, start_testbed

Call = tuple[str, ...]
Kubeconfig = Path | str | None
#: Dapr's ``dapr status -k`` header.
STATUS_HEADER = ["NAME", "NAMESPACE", "HEALTHY", "STATUS", "REPLICAS", "VERSION", "AGE", "CREATED"]


class Result(_Result):
    """What one ``dapr`` command printed (``returncode``, ``stdout``, ``stderr``)."""

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def private_testbed(name: str, *, crds: bool = True) -> Callable[..., Iterator[Testbed]]:
    """A module-scoped fixture: an API server of the module's own (Dapr's CRDs applied unless
    ``crds=False``), stopped after the module."""

    @pytest.fixture(scope="module")
    def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
        if non_loopback_interfaces():
            pytest.fail("run the Kubernetes tests with `python -m tests.prebuild`", pytrace=False)
        testbed = start_testbed(build_testbed(), tmp_path_factory.mktemp(name))
        try:
            if crds:
                apply_dapr_crds(testbed)
            yield testbed
        finally:
            testbed.stop()

    return bed


def workload(app: str, kind: str, image: str, replicas: int = 1) -> dict[str, Any]:
    """A Deployment or StatefulSet (``kind``) of one container, labelled ``app=<app>`` as the
    chart labels the control plane's (what ``dapr status -k`` selects by)."""
    labels = {"app": app}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": app, "image": image}]},
        },
    }
    if kind == "statefulsets":
        spec["serviceName"] = app
    return {"metadata": {"name": app, "labels": labels}, "spec": spec}


def dapr_env(home: Path, kubeconfig: Kubeconfig) -> dict[str, str]:
    """This process's environment for ``dapr`` in ``home``, ``KUBECONFIG`` only when given."""
    drop = ("DAPR_HOME", "KUBECONFIG", "NAMESPACE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="200")
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def spawn(home: Path, args: Call, kubeconfig: Kubeconfig) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pysentry.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dapr_env(home, kubeconfig),
    )


def collect(procs: list[subprocess.Popen[str]], timeout: float) -> list[Result]:
    """Each process's result, in order; one still running after ``timeout`` is killed."""
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(Result(proc.returncode, out, err))
    return results


def dapr(home: Path, *args: str, kubeconfig: Kubeconfig = None, timeout: float = 60) -> Result:
    """One command in its own process, as a user runs it."""
    return collect([spawn(home, args, kubeconfig)], timeout)[0]


def dapr_side_by_side(
    home: Path, calls: Sequence[tuple[Call, Kubeconfig]], *, timeout: float = 90
) -> list[Result]:
    """Commands in processes of their own, all started at once (each is about a second of
    Python start-up); ``calls`` are ``(args, kubeconfig)``."""
    return collect([spawn(home, args, kubeconfig) for args, kubeconfig in calls], timeout)


def dapr_batch(home: Path, calls: Sequence[tuple[Call, Kubeconfig]]) -> list[Result]:
    """Commands one after the other in one process (:mod:`tests.k8s.clibatch`: one Python
    start-up for all of them), each with its own ``KUBECONFIG``."""
    request = [{"args": list(a), "kubeconfig": None if k is None else str(k)} for a, k in calls]
    done = subprocess.run(
        [sys.executable, "-m", "tests.k8s.clibatch"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=dapr_env(home, None),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    replies: list[dict[str, Any]] = json.loads(done.stdout)
    return [Result(r["returncode"], r["stdout"], r["stderr"]) for r in replies]
