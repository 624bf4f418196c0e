"""A stand-in for the kubelet: run a Pod's injected ``daprd`` container as a local process.

Pods never start on the testbed (no kubelet, no container runtime), so this does the kubelet's
part by hand, and says where it departs from the Pod spec:

- the container's ``args`` and ``env`` are used as the injector wrote them; ``valueFrom.fieldRef``
  ``metadata.name`` becomes the Pod's name (the downward API);
- the projected ``dapr-identity-token`` volume is a TokenRequest bound to the Pod (audience = the
  Sentry ID, as the volume says) written to a file; ``DAPR_SENTRY_TOKEN_FILE`` points at it because
  ``/var/run/secrets/dapr.io/sentrytoken`` is a shared system path here;
- the ``dapr-trust-bundle`` ConfigMap volume is a directory holding ``ca.crt``, replaced the way
  the kubelet updates ConfigMap volumes (a new ``..data`` directory swapped in by rename);
- all Pods share one loopback, so the ports and the Sentry address (a Service DNS name) are
  overridden by flags appended after the injected ones (the last value of a flag wins), and
  ``--trust-anchors-file`` points into that directory;
- in-cluster API access is a kubeconfig (``KUBECONFIG``) with a token of the Pod's account;
- the suite runs as root: ``DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK=true``, as Dapr's own
  integration tests set it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.sentry.conftest import free_port

START_TIMEOUT_S = 30.0


def flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} not in {args}"
    return args[args.index(name) + 1]


def container_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = pod_name
        else:
            raise AssertionError(f"env {entry['name']}: no stand-in for {entry!r}")
    return env


def project_configmap(directory: Path, files: dict[str, str]) -> None:
    """Write a ConfigMap volume as the kubelet does: ``..data`` -> a fresh directory, swapped in
    with one rename, and ``<key>`` -> ``..data/<key>`` symlinks."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    for key, text in files.items():
        (stamp / key).write_text(text)
    tmp = directory / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    tmp.rename(directory / "..data")
    for key in files:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(f"..data/{key}")


@dataclass
class Sidecar:
    """One Pod's daprd, run from its (mutated) spec."""

    pod: dict[str, Any]
    workdir: Path
    token: str
    kubeconfig: Path
    sentry_port: int
    app_port: int
    bundle_dir: Path = field(init=False)
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    internal_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.bundle_dir = self.workdir / f"{self.name}-tls"

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def container(self) -> dict[str, Any]:
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == "daprd")

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daprd-{self.name}.log"

    def command(self) -> list[str]:
        args = list(self.container["args"])
        overrides = [
            "--dapr-http-port", str(self.http_port),
            "--dapr-grpc-port", str(self.grpc_port),
            "--dapr-internal-grpc-port", str(self.internal_port),
            "--metrics-port", str(self.metrics_port),
            "--app-port", str(self.app_port),
            "--sentry-address", f"127.0.0.1:{self.sentry_port}",
            "--trust-anchors-file", str(self.bundle_dir / "ca.crt"),
        ]  # fmt: skip
        for name in overrides[::2]:
            flag(args, name)  # each overridden flag was injected
        return [sys.executable, "-m", "pysentry.sidecar.main", *args, *overrides]

    def environment(self) -> dict[str, str]:
        token_file = self.workdir / f"{self.name}-token"
        token_file.write_text(self.token)
        env = container_env(self.container, self.name)
        env.update(
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
            HOME=str(self.workdir),
            PYTHONUNBUFFERED="1",
            KUBECONFIG=str(self.kubeconfig),
            DAPR_SENTRY_TOKEN_FILE=str(token_file),
            DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK="true",
        )
        return env

    def start(self, ca_crt: str) -> None:
        project_configmap(self.bundle_dir, {"ca.crt": ca_crt})
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.workdir,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = START_TIMEOUT_S, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log()[after:]:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the log of daprd {self.name}:\n{self.log()}")

    def wait_exit(self, timeout: float = START_TIMEOUT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daprd {self.name} still running:\n{self.log()}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
