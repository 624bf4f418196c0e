"""The two implementations' processes for ``bench/vs_go.py``: Sentry, daprds, the stack.

Both implementations get the same command line (Go's daprd also gets an empty
``--resources-path``, a flag pysentry's daprd does not have), the same daprd Configuration
(the ``sqlite`` resolver, one file per implementation, and an ``accessControl`` that denies by
default and allows ``appa``), the same trust anchors and the same Sentry configuration.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vs_go_procs import Proc, Procs, free_port, http_status, wait_http

CALLER, CALLEE, OUTSIDER = "appa", "appb", "appc"


@dataclass(frozen=True)
class Impl:
    name: str  # "go" or "pysentry"
    sentry_bin: Path
    daprd_bin: Path
    env: dict[str, str] = field(default_factory=dict)  # e.g. PYTHONPATH for --pysentry-src
    sentry_args: tuple[str, ...] = ()  # appended to every Sentry's command line
    daprd_args: tuple[str, ...] = ()  # appended to every daprd's command line


@dataclass
class Sentry:
    proc: Proc
    port: int


@dataclass
class Daprd:
    proc: Proc
    app_id: str
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def sentry_config(tmp: Path) -> Path:
    path = tmp / "sentry-config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\n"
        "spec:\n  mtls:\n    enabled: true\n"
    )
    return path


def daprd_config(tmp: Path, db: Path) -> Path:
    """The sqlite resolver on ``db`` and an ACL that allows only ``appa``, checked per call."""
    path = tmp / f"daprd-{db.stem}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: benchconfig\n"
        "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {db}\n      updateInterval: 5s\n      timeout: 3s\n"
        "  accessControl:\n    defaultAction: deny\n    trustDomain: public\n    policies:\n"
        f"    - appId: {CALLER}\n      defaultAction: allow\n      trustDomain: public\n"
        "      namespace: default\n"
    )
    return path


def start_sentry(procs: Procs, impl: Impl, creds: Path, name: str) -> Sentry:
    port, health = free_port(), free_port()
    cmd = [str(impl.sentry_bin), "--issuer-credentials", str(creds)]
    cmd += ["--config", str(sentry_config(procs.tmp)), "--trust-domain", "localhost"]
    cmd += ["--port", str(port), "--listen-address", "127.0.0.1"]
    cmd += ["--healthz-port", str(health), "--healthz-listen-address", "127.0.0.1"]
    cmd += ["--metrics-port", str(free_port()), "--metrics-listen-address", "127.0.0.1"]
    proc = procs.spawn(name, [*cmd, *impl.sentry_args], impl.env)
    wait_http(proc, f"http://127.0.0.1:{health}/healthz", (200,))
    return Sentry(proc, port)


def spawn_daprd(
    procs: Procs,
    impl: Impl,
    app_id: str,
    app_port: int | None,
    *,
    sentry_port: int,
    anchors: bytes,
    config: Path,
    name: str,
) -> Daprd:
    http, grpc, internal, metrics = free_port(), free_port(), free_port(), free_port()
    cmd = [str(impl.daprd_bin), "--mode", "standalone", "--app-id", app_id]
    cmd += ["--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc)]
    cmd += ["--dapr-internal-grpc-port", str(internal), "--dapr-listen-addresses", "127.0.0.1"]
    cmd += ["--dapr-internal-grpc-listen-address", "127.0.0.1"]
    cmd += ["--metrics-port", str(metrics), "--metrics-listen-address", "127.0.0.1"]
    cmd += [
        "--config",
        str(config),
        "--enable-mtls",
        "--sentry-address",
        f"127.0.0.1:{sentry_port}",
    ]
    cmd += ["--control-plane-trust-domain", "localhost"]
    if app_port:
        cmd += ["--app-port", str(app_port)]
    if impl.name == "go":
        resources = procs.tmp / "resources-empty"
        resources.mkdir(exist_ok=True)
        cmd += ["--resources-path", str(resources)]
    env = {
        **impl.env,
        "DAPR_TRUST_ANCHORS": anchors.decode(),
        "DAPR_HOST_IP": "127.0.0.1",
        "NAMESPACE": "default",
    }
    return Daprd(procs.spawn(name, [*cmd, *impl.daprd_args], env), app_id, http)


def wait_outbound(d: Daprd, timeout: float = 60) -> None:
    wait_http(d.proc, f"{d.url}/v1.0/healthz/outbound", (204,), timeout)


@dataclass
class Stack:
    impl: Impl
    sentry: Sentry
    caller: Daprd
    callee: Daprd

    @property
    def invoke_url(self) -> str:
        return f"{self.caller.url}/v1.0/invoke/{CALLEE}/method/echo"

    def sidecar_pids(self) -> list[int]:
        return [self.caller.proc.pid, self.callee.proc.pid]


def start_stack(procs: Procs, impl: Impl, sentry: Sentry, anchors: bytes, app_port: int) -> Stack:
    """daprd ``appb`` (the echo app behind it) and daprd ``appa`` on ``sentry``; checks that a
    1 KB invoke round-trips and that the callee's ACL denies ``appc``, a caller it does not
    list (``appc``'s daprd is stopped again after that check)."""
    config = daprd_config(procs.tmp, procs.tmp / f"nr-{impl.name}.db")
    daprds = []
    for app_id, port in ((CALLEE, app_port), (CALLER, None), (OUTSIDER, None)):
        d = spawn_daprd(
            procs,
            impl,
            app_id,
            port,
            sentry_port=sentry.port,
            anchors=anchors,
            config=config,
            name=f"{impl.name}-daprd-{app_id}",
        )
        wait_outbound(d)
        daprds.append(d)
    callee, caller, outsider = daprds
    stack = Stack(impl, sentry, caller, callee)
    body = os.urandom(1024)
    deadline = time.monotonic() + 30
    while (got := http_status(stack.invoke_url, body))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # name resolution: appb's row may not be visible yet
    if got != (200, body):
        raise RuntimeError(
            f"{impl.name}: invoke through {stack.invoke_url} failed: {got[0]} {got[1][:300]!r}"
        )
    denied = http_status(f"{outsider.url}/v1.0/invoke/{CALLEE}/method/echo", body)
    outsider.proc.stop()
    if denied[0] != 403:
        raise RuntimeError(
            f"{impl.name}: the ACL let {OUTSIDER} call {CALLEE} (want 403): "
            f"{denied[0]} {denied[1][:300]!r}"
        )
    return stack
