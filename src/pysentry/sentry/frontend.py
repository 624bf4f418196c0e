"""Where ``SignCertificate`` is served: in Sentry's own process, or by ``--workers`` processes.

:func:`start_frontend` binds the gRPC port (``--port: port 50001 is already in use ...`` either
way) and returns a :class:`Frontend`: ``on_swap`` runs after a reload swapped the bundle,
``close`` stops serving. With one worker the grpclib server runs here, as it always did. With N,
a :class:`~pysentry.sentry.workers.WorkerPool` signs; this process keeps the CA state, pushes
every new bundle and serving SVID to the workers, and ``/metrics`` adds up their counters from
prometheus-client's multiprocess files in a private temporary directory (removed on close).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from grpclib.server import Server
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from pysentry.config import Configuration
from pysentry.errors import PysentryError
from pysentry.sentry.admission import MAX_QUEUED
from pysentry.sentry.ca import CertificateAuthority
from pysentry.sentry.identity import ServingIdentity
from pysentry.sentry.monitoring import Health, SentryMetrics
from pysentry.sentry.options import SentryOptions
from pysentry.sentry.server import build_server
from pysentry.sentry.worker import WORKER_SIGNED, WorkerSpec
from pysentry.sentry.workers import WorkerPool

SIGNING_METRICS = frozenset(
    {
        "dapr_sentry_cert_sign_request_received",
        "dapr_sentry_cert_sign_success",
        "dapr_sentry_cert_sign_failure",
        WORKER_SIGNED,
    }
)
"""Counted by the workers; every other Sentry metric is the main process's own."""


class ListenError(PysentryError):
    """A port Sentry cannot listen on; the message names the flag and the fix."""


def listen_error(
    flag: str, host: str, port: int, err: OSError, address_flag: str | None = None
) -> ListenError:
    """Name the flag and the fix: ``--port: port 50001 is already in use on 127.0.0.1: ...``."""
    where = host or "all interfaces"
    reason = os.strerror(err.errno) if err.errno else str(err)
    if err.errno == errno.EADDRINUSE:
        return ListenError(
            f"{flag}: port {port} is already in use on {where}: {reason}; "
            f"stop the process that holds it or pass another port with {flag}"
        )
    given = f"{address_flag} and {flag}" if address_flag else flag
    return ListenError(f"{flag}: cannot listen on {where} port {port}: {reason}; check {given}")


class Frontend(Protocol):
    async def on_swap(self) -> None: ...

    async def close(self) -> None: ...


class InProcess:
    def __init__(self, server: Server, identity: ServingIdentity) -> None:
        self._server = server
        self._identity = identity
        self._closed = False

    async def on_swap(self) -> None:
        await self._identity.reissue()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.close()
        await self._server.wait_closed()


class Workers:
    def __init__(
        self,
        pool: WorkerPool,
        ca: CertificateAuthority,
        identity: ServingIdentity,
        sockets: list[socket.socket],
        metrics_dir: str,
    ) -> None:
        self.pool = pool
        self._ca = ca
        self._identity = identity
        self._sockets = sockets
        self._metrics_dir = metrics_dir
        self._closed = False

    async def on_swap(self) -> None:
        await self._identity.reissue()  # the bundle went out in the swap; the SVID follows

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.pool.stop()
        finally:
            for sock in self._sockets:
                sock.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)


class MergedMetrics(Collector):
    """The main process's own metrics plus the workers' signing counters, summed."""

    def __init__(self, own: CollectorRegistry, metrics_dir: str) -> None:
        self._own = own
        self._workers = MultiProcessCollector(None, path=metrics_dir)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for family in self._own.collect():
            if family.name not in SIGNING_METRICS:
                yield family
        for family in self._workers.collect():  # type: ignore[no-untyped-call]
            if family.name in SIGNING_METRICS:
                yield family


METRICS_DIR_PREFIX = "pysentry-sentry-metrics-"


def metrics_directory() -> str:
    """A new private directory for the workers' metric files, ``<tmp>/<prefix><pid>-<random>``.
    Directories that a Sentry killed before its cleanup left (their pid is gone) go first."""
    tmp = Path(tempfile.gettempdir())
    for stale in tmp.glob(METRICS_DIR_PREFIX + "*-*"):
        pid = stale.name[len(METRICS_DIR_PREFIX) :].split("-", 1)[0]
        try:
            if not pid.isdigit() or stale.lstat().st_uid != os.getuid() or stale.is_symlink():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:  # alive but not ours to signal, or vanished meanwhile
            continue
    return tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")


async def bind(options: SentryOptions) -> list[socket.socket]:
    """The listening gRPC sockets, bound as grpclib would (both families for all interfaces)."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            asyncio.Protocol,
            options.listen_address or None,
            options.port,
            reuse_address=True,
            start_serving=False,
        )
    except OSError as err:
        raise listen_error(
            "--port", options.listen_address, options.port, err, "--listen-address"
        ) from err
    sockets = [socket.socket(fileno=os.dup(s.fileno())) for s in server.sockets]
    server.close()
    for sock in sockets:
        sock.setblocking(False)
        sock.listen(100)
    return sockets


async def start_frontend(
    options: SentryOptions,
    ca: CertificateAuthority,
    identity: ServingIdentity,
    *,
    config: Configuration,
    metrics: SentryMetrics,
    health: Health,
    kube_namespace: str | None,
) -> Frontend:
    if options.workers == 1:
        server = build_server(
            ca,
            max_request_bytes=options.max_request_bytes,
            max_sign_wait_s=options.max_sign_wait.total_seconds(),
        )
        try:
            await server.start(
                options.listen_address or None,
                options.port,
                ssl=identity.listener_context,
                reuse_address=True,
            )
        except OSError as err:
            raise listen_error(
                "--port", options.listen_address, options.port, err, "--listen-address"
            ) from err
        return InProcess(server, identity)
    sockets = await bind(options)
    count = options.workers
    metrics_dir = metrics_directory()
    settings = dataclasses.replace(
        ca.settings, max_concurrent_signs=math.ceil(ca.settings.max_concurrent_signs / count)
    )

    def spec_for(index: int) -> WorkerSpec:
        return WorkerSpec(
            index=index,
            count=count,
            parent_pid=os.getpid(),
            sockets=tuple(sockets),
            options=options,
            config=config,
            settings=settings,
            max_queued=math.ceil(MAX_QUEUED / count),
            metrics_dir=metrics_dir,
            bundle=lambda: ca.bundle,
            svid=identity.current,
            kube_namespace=kube_namespace,
        )

    pool = WorkerPool(spec_for, count, metrics_dir, health)
    frontend = Workers(pool, ca, identity, sockets, metrics_dir)
    identity.provider.subscribe(pool.push_svid)
    ca.swap_listeners.append(pool.push_bundle)
    try:
        await pool.start()
    except BaseException:
        await frontend.close()
        raise
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MergedMetrics(metrics.registry, metrics_dir))
    metrics.exposition = registry
    return frontend
