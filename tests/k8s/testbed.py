"""A real Kubernetes API server for the tests: ``etcd`` + ``kube-apiserver`` on 127.0.0.1.

::

    python -m tests.k8s.testbed build   # build (or reuse) the pinned binaries; needs the Go proxy
    python -m tests.k8s.testbed start   # start one, print its kubeconfig path, stop on Ctrl-C

There is no kubelet, scheduler or controller-manager: Pods stay ``Pending`` and namespaces never
finish deleting, so every test gets a fresh namespace. Everything stays on loopback: the servers
bind 127.0.0.1, ``--enable-aggregator-routing=true`` keeps Service-backed APIs local, and
``make test`` runs the suite inside a network namespace with only ``lo`` (``tests/prebuild.py``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tests.k8s.build import TestbedBinaries, build_testbed
from tests.k8s.pki import write_pki

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 8.0  # open watches can hold a graceful stop for longer: then SIGKILL
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class TestbedError(RuntimeError):
    """The API server could not be started (the message carries the end of its log)."""

    __test__: ClassVar[bool] = False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Testbed:
    """A running etcd + kube-apiserver pair. ``request`` is a tiny synchronous JSON client."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    workdir: Path
    port: int
    token: str = field(repr=False)
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_pem(self) -> bytes:
        return (self.workdir / "pki" / "ca.crt").read_bytes()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """``(status, decoded JSON body)``; never raises for an HTTP error status."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def must(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, out = self.request(method, path, body, **kw)
        if status >= 300:
            raise AssertionError(f"{method} {path}: HTTP {status}: {out!r}")
        return out

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):  # apiserver first, then etcd
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _write_kubeconfig(path: Path, url: str, ca_pem: bytes, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {
                    "server": url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "admin"}}],
        "current-context": "testbed",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    path.chmod(0o600)


def start_testbed(binaries: TestbedBinaries, workdir: Path) -> Testbed:
    """Start etcd and kube-apiserver on free loopback ports; return once ``/readyz`` is ok."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    token = secrets.token_urlsafe(32)
    write_pki(pki)
    (pki / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
    (pki / "tokens.csv").chmod(0o600)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}  # flags in disguise
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd = _spawn(
        [
            str(binaries.etcd),
            "--name",
            "testbed",
            "--data-dir",
            str(workdir / "etcd-data"),
            "--listen-client-urls",
            etcd_url,
            "--advertise-client-urls",
            etcd_url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"testbed=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls",
            "",
            "--unsafe-no-fsync",
            "--log-level",
            "warn",
        ],
        workdir / "etcd.log",
        env,
    )
    apiserver = _spawn(
        [
            str(binaries.apiserver),
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            str(api_port),
            "--etcd-servers",
            etcd_url,
            "--endpoint-reconciler-type",
            "none",
            "--enable-aggregator-routing=true",
            "--service-cluster-ip-range",
            "10.0.0.0/24",
            "--client-ca-file",
            str(pki / "ca.crt"),
            "--token-auth-file",
            str(pki / "tokens.csv"),
            "--tls-cert-file",
            str(pki / "serving.crt"),
            "--tls-private-key-file",
            str(pki / "serving.key"),
            "--service-account-issuer",
            SA_ISSUER,
            "--service-account-key-file",
            str(pki / "sa.pub"),
            "--service-account-signing-key-file",
            str(pki / "sa.key"),
            "--api-audiences",
            SA_ISSUER,
            "--authorization-mode",
            "RBAC",
            "--cert-dir",
            str(workdir / "certs"),
            "--profiling=false",
            "--v",
            "1",
        ],
        workdir / "apiserver.log",
        env,
    )
    bed = Testbed(workdir, api_port, token, [etcd, apiserver])
    _write_kubeconfig(bed.kubeconfig, bed.url, bed.ca_pem, token)
    try:
        _wait_ready(bed)
    except BaseException:
        bed.stop()
        raise
    return bed


def _wait_ready(bed: Testbed) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        for proc, name in zip(bed.procs, ("etcd", "apiserver"), strict=True):
            if proc.poll() is not None:
                raise TestbedError(
                    f"{name} exited with {proc.returncode} during start:\n{bed.log_tail(name)}"
                )
        try:
            status, body = bed.request("GET", "/readyz")
            if status == 200:
                return
            last = f"HTTP {status}: {body!r}"
        except OSError as err:
            last = str(err)
        time.sleep(0.2)
    raise TestbedError(
        f"kube-apiserver not ready after {READY_TIMEOUT_S:.0f}s ({last}):\n"
        f"{bed.log_tail('apiserver')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.testbed")
    parser.add_argument("command", choices=("build", "start"))
    args = parser.parse_args(argv)
    binaries = build_testbed()
    if args.command == "build":
        how = f"built in {binaries.build_seconds:.0f}s" if binaries.build_seconds else "cached"
        print(f"kube-apiserver and etcd ({how}): {binaries.bin_dir}")
        return 0
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    workdir = Path(tempfile.mkdtemp(prefix="pysentry-k8s-"))
    started = time.monotonic()
    bed = start_testbed(binaries, workdir)
    print(f"ready in {time.monotonic() - started:.1f}s: export KUBECONFIG={bed.kubeconfig}")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        bed.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
