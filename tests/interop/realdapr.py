"""Start Dapr's real Go ``sentry`` and ``daprd`` (v1.16.0, :mod:`tests.interop.daprbins`) next to
pysentry's, on loopback, through the ``tests/e2e/conftest.py`` :class:`Cluster` (logs, cleanup).

A Go daprd runs standalone with ``--enable-mtls``, ``DAPR_TRUST_ANCHORS`` and
``DAPR_HOST_IP=127.0.0.1`` (the address it registers in name resolution; the default is the
first non-loopback IP), the same ``--config`` as pysentry's daprds (the shared ``sqlite``
resolver on ``cluster.nr_db``) and an empty ``--resources-path``.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from pysentry.testing import TestCA
from tests.e2e.conftest import Cluster, Daprd, Proc, free_port, wait_http
from tests.interop.daprbins import DaprBinaries

CL_APP = Path(__file__).resolve().parent / "cl_app.py"


def shared_config(cluster: Cluster, extra: str = "") -> Path:
    """The daprd Configuration both implementations use: the ``sqlite`` resolver on
    ``cluster.nr_db`` with ``updateInterval: 5s`` and ``timeout: 3s`` (a beat every 2 s, rows
    fresh for 5 s: a loaded machine cannot make a live row look stale), plus ``extra``."""
    path = cluster.tmp / f"interop-{hashlib.sha256(extra.encode()).hexdigest()[:12]}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: appconfig\n"
        "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
        f"      connectionString: {cluster.nr_db}\n      updateInterval: 5s\n"
        "      timeout: 3s\n" + extra
    )
    return path


async def py_daprd(
    cluster: Cluster,
    app_id: str,
    app_port: int | None,
    *,
    sentry_port: int,
    anchors_pem: bytes,
    config_extra: str = "",
    config: Path | None = None,
) -> Daprd:
    """pysentry's daprd with :func:`shared_config` (or ``config``), as :meth:`Cluster.daprd`."""
    path = config or shared_config(cluster, config_extra)
    return await cluster.daprd(
        app_id,
        app_port,
        sentry_port=sentry_port,
        anchors_pem=anchors_pem,
        args=["--config", str(path)],
    )


async def go_sentry(
    cluster: Cluster,
    bins: DaprBinaries,
    creds: Path,
    *,
    trust_domain: str = "localhost",
    ttl: str = "1h",
    skew: str | None = "1s",
) -> tuple[Proc, int]:
    """Dapr's Go Sentry on ``creds`` (generates a CA there when the directory is empty)."""
    port, health = free_port(), free_port()
    proc = cluster.spawn(
        "go-sentry",
        [
            str(bins.sentry),
            "--issuer-credentials",
            str(creds),
            "--trust-domain",
            trust_domain,
            "--config",
            str(cluster.write_sentry_config(ttl, skew)),
            "--port",
            str(port),
            "--listen-address",
            "127.0.0.1",
            "--healthz-port",
            str(health),
            "--healthz-listen-address",
            "127.0.0.1",
            "--metrics-port",
            str(free_port()),
            "--metrics-listen-address",
            "127.0.0.1",
            "--log-level",
            "debug",
        ],
    )
    await wait_http(proc, f"http://127.0.0.1:{health}/healthz", (200,), timeout=60)
    return proc, port


async def go_daprd(
    cluster: Cluster,
    bins: DaprBinaries,
    app_id: str,
    app_port: int | None,
    *,
    sentry_port: int,
    anchors_pem: bytes,
    config_extra: str = "",
    config: Path | None = None,
    control_plane_trust_domain: str = "localhost",
) -> Daprd:
    """Dapr's Go daprd with mTLS through ``sentry_port``, ready when ``healthz/outbound`` is 204.

    ``config`` replaces the shared sqlite configuration (:func:`shared_config`)."""
    http, grpc, internal, metrics = free_port(), free_port(), free_port(), free_port()
    resources = cluster.tmp / f"resources-{app_id}"
    resources.mkdir(exist_ok=True)
    cmd = [
        str(bins.daprd),
        "--mode",
        "standalone",
        "--app-id",
        app_id,
        "--dapr-http-port",
        str(http),
        "--dapr-grpc-port",
        str(grpc),
        "--dapr-internal-grpc-port",
        str(internal),
        "--dapr-listen-addresses",
        "127.0.0.1",
        "--dapr-internal-grpc-listen-address",
        "127.0.0.1",
        "--metrics-port",
        str(metrics),
        "--metrics-listen-address",
        "127.0.0.1",
        "--config",
        str(config or shared_config(cluster, config_extra)),
        "--resources-path",
        str(resources),
        "--enable-mtls",
        "--sentry-address",
        f"127.0.0.1:{sentry_port}",
        "--control-plane-trust-domain",
        control_plane_trust_domain,
        "--log-level",
        "debug",
    ]
    if app_port:
        cmd += ["--app-port", str(app_port)]
    env = {
        "DAPR_TRUST_ANCHORS": anchors_pem.decode(),
        "DAPR_HOST_IP": "127.0.0.1",
        "NAMESPACE": "default",
    }
    proc = cluster.spawn(f"go-daprd-{app_id}", cmd, env)
    d = Daprd(proc, app_id, http, internal, metrics)
    await wait_http(proc, f"{d.url}/v1.0/healthz/outbound", (204,), timeout=60)
    return d


async def cl_app(cluster: Cluster, name: str) -> tuple[Proc, int]:
    """The Content-Length-only app (:mod:`tests.interop.cl_app`)."""
    port = free_port()
    proc = cluster.spawn(f"cl-app-{name}", [sys.executable, str(CL_APP), str(port)])
    await wait_http(proc, f"http://127.0.0.1:{port}/health", (200,))
    return proc, port


def kubernetes_config(cluster: Cluster, name: str, template: str) -> Path:
    """A daprd Configuration with the ``kubernetes`` resolver and ``template``."""
    path = cluster.tmp / f"k8s-nr-{name}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: k8snr\n"
        "spec:\n  nameResolution:\n    component: kubernetes\n    configuration:\n"
        f"      template: {template!r}\n"
    )
    return path


async def pysentry_sentry(cluster: Cluster) -> tuple[int, bytes]:
    """A pysentry Sentry on a fresh ``localhost`` CA: its port and the trust anchors."""
    ca = TestCA.create("localhost")
    creds = cluster.tmp / "creds"
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    _, port = await cluster.sentry(creds)
    return port, ca.anchors_pem()
