"""One signing worker of ``sentry --workers N``: the child side of :mod:`pysentry.sentry.workers`.

The main process forks a worker once it holds the CA bundle, Sentry's serving SVID and the bound
gRPC sockets, so the worker starts with all three in memory (nothing is read from disk or the
Kubernetes API again, and no interpreter starts). In the child, :func:`run_in_child` drops what
belongs to the parent (its event loop, signal wake-up, every file descriptor except the gRPC
sockets, the control socket and stdio), switches prometheus-client to multiprocess mode, and runs
a fresh event loop that serves ``SignCertificate`` on the shared sockets with its own validators
and its own share of the signing budget.

The control socket carries JSON lines. The worker sends ``{"ready": {target: bool}}`` once it
serves, or ``{"fatal": "<reason>"}`` if its validators cannot start. The parent sends
``{"bundle": ...}`` after a reload and ``{"svid": ...}`` after each serving-certificate rotation.
The worker exits on SIGTERM (after closing its servers), and at once when the control socket
closes or the parent dies (``PR_SET_PDEATHSIG``): a worker never outlives its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from prometheus_client import Gauge, values

from pysentry.config import Configuration
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import dump_private_key, load_private_key
from pysentry.pki.pem import dump_certificates, load_certificates
from pysentry.security.identity import X509Svid
from pysentry.security.rotation import RotatingServerContext
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.coalesce import CoalescingServer
from pysentry.sentry.monitoring import SentryMetrics
from pysentry.sentry.options import SentryOptions
from pysentry.sentry.server import CaService
from pysentry.sentry.validator_setup import build_validators

if TYPE_CHECKING:
    from pysentry.sentry.k8s_mode import KubernetesMode

log = logging.getLogger("pysentry.sentry")

WORKER_SIGNED = "pysentry_sentry_worker_certs_signed"
MESSAGE_LIMIT = 16 * 1024 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs; ``bundle`` and ``svid`` are read in the child, right after fork."""

    index: int
    count: int
    parent_pid: int
    sockets: tuple[socket.socket, ...]
    options: SentryOptions
    config: Configuration
    settings: CaSettings
    max_queued: int
    metrics_dir: str
    bundle: Callable[[], CaBundle]
    svid: Callable[[], X509Svid]
    kube_namespace: str | None = None


class WorkerMetrics(SentryMetrics):
    """The signing counters (summed over workers by the parent) and this worker's own count."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._worker = str(index)
        self.signed_here = Gauge(
            WORKER_SIGNED,
            "pysentry: certificates this worker process signed (one series per live worker).",
            ["worker"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.signed_here.labels(worker=self._worker).set(0)

    def sign_succeeded(self) -> None:
        super().sign_succeeded()
        self.signed_here.labels(worker=self._worker).inc()


def bundle_message(bundle: CaBundle) -> dict[str, Any]:
    return {
        "bundle": {
            "anchors": dump_certificates(bundle.trust_anchors).decode(),
            "chain": dump_certificates(bundle.issuer_chain).decode(),
            "key": dump_private_key(bundle.issuer_key).decode(),
        }
    }


def svid_message(svid: X509Svid) -> dict[str, Any]:
    return {
        "svid": {
            "chain": dump_certificates(svid.chain).decode(),
            "key": dump_private_key(svid.private_key).decode(),
        }
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def run_in_child(spec: WorkerSpec, control: socket.socket) -> NoReturn:
    """The forked child: detach from the parent's state, serve, never return."""
    code = 1
    try:
        bundle, svid = spec.bundle(), spec.svid()
        _detach(spec, control)
        code = _run_loop(_serve(spec, control, bundle, svid))
    except BaseException:
        with contextlib.suppress(Exception):
            log.critical("Sentry worker %d failed", spec.index, exc_info=True)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _detach(spec: WorkerSpec, control: socket.socket) -> None:
    gc.freeze()  # the parent's objects stay as they are: none is collected (and closes an fd)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != spec.parent_pid:
        os._exit(1)  # the parent died before the death signal was armed
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    keep = {0, 1, 2, control.fileno(), *(s.fileno() for s in spec.sockets)}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    asyncio.events._set_running_loop(None)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = spec.metrics_dir
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(spec: WorkerSpec, control: socket.socket, bundle: CaBundle, svid: X509Svid) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader, writer = await asyncio.open_connection(sock=control, limit=MESSAGE_LIMIT)
    kube = await _kube(spec) if spec.kube_namespace is not None else None
    try:
        metrics = WorkerMetrics(spec.index)
        validators, default = build_validators(
            spec.config, spec.options, kube, spec.settings, announce=False
        )
        try:
            for validator in validators.values():
                await validator.start()
        except Exception as err:
            writer.write(encode({"fatal": str(err) or type(err).__name__}))
            await writer.drain()
            return 1
        ca = CertificateAuthority(
            bundle, spec.settings, validators=validators, default_validator=default, metrics=metrics
        )
        rotating = RotatingServerContext(svid, None, require_client_cert=False)
        rotating.listener.num_tickets = 0  # as ServingIdentity.start does
        service = CaService(
            ca,
            max_request_bytes=spec.options.max_request_bytes,
            max_sign_wait_s=spec.options.max_sign_wait.total_seconds(),
            max_queued=spec.max_queued,
        )
        servers = [CoalescingServer([service]) for _ in spec.sockets]
        for server, sock in zip(servers, spec.sockets, strict=True):
            await server.start(sock=sock, ssl=rotating.listener)
        targets = {v.health_target: v.ready() for v in validators.values() if v.health_target}
        writer.write(encode({"ready": targets}))
        log.info("Sentry worker %d of %d signing: pid %d", spec.index, spec.count, os.getpid())
        async with asyncio.TaskGroup() as tasks:
            background = [tasks.create_task(v.run()) for v in validators.values()]
            follow = _follow(reader, ca, rotating, stop, (spec.index, spec.count))
            background.append(tasks.create_task(follow))
            await stop.wait()
            for server in servers:
                server.close()
            for server in servers:
                await server.wait_closed()
            for task in background:
                task.cancel()
    finally:
        if kube is not None:
            await kube.close()
    return 0


async def _kube(spec: WorkerSpec) -> KubernetesMode:
    """The worker's own API connection, for its ``kubernetes`` validator's caches and lookups."""
    from pysentry.sentry.k8s_mode import KubernetesMode
    from pysentry.sentry.kubernetes import connect

    options = spec.options
    client = await connect(options.kubeconfig if options.kubeconfig_explicit else None)
    names = (
        options.issuer_ca_filename,
        options.issuer_certificate_filename,
        options.issuer_key_filename,
    )
    assert spec.kube_namespace is not None
    return KubernetesMode(client, spec.kube_namespace, names, os.environ)


async def _follow(
    reader: asyncio.StreamReader,
    ca: CertificateAuthority,
    rotating: RotatingServerContext,
    stop: asyncio.Event,
    worker: tuple[int, int],
) -> None:
    """Apply the parent's updates; its end closing means it is gone: stop."""
    index, count = worker
    while line := await reader.readline():
        message = json.loads(line)
        if "bundle" in message:
            pems = message["bundle"]
            ca.swap(
                CaBundle(
                    load_certificates(pems["anchors"].encode()),
                    load_certificates(pems["chain"].encode()),
                    load_private_key(pems["key"].encode()),
                )
            )
            log.info("Sentry worker %d of %d: CA bundle replaced", index, count)
        if "svid" in message:
            pems = message["svid"]
            rotating.set_identity(
                X509Svid.from_chain(
                    load_certificates(pems["chain"].encode()),
                    load_private_key(pems["key"].encode()),
                )
            )
    stop.set()
