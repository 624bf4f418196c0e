"""daprd on the event loop: the servers and the app channel wired, the ports served, name
resolution kept, until SIGTERM/SIGINT; then the graceful shutdown.

:func:`run` is what :func:`pysentry.sidecar.main.main` runs on the loop, after ``early_start()``
(``prelude.py``) when the first identity came first.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import TYPE_CHECKING

from pysentry.errors import SentryUnavailable
from pysentry.security.events import EarlySecurityMetrics
from pysentry.sidecar.earlygc import SETTLE_GC_AFTER_S, START_GC_OFF_LIMIT_S, settle_gc
from pysentry.sidecar.options import Options
from pysentry.sidecar.prelude import (
    Early,
    announce,
    bind_sockets,
    check_config_file,
    identity_failed,
    identity_first,
    load_config,
)

# The servers, the app channel, the Configuration (pydantic) and name resolution are imported
# in run(), after the first identity (issue 13, lever 5).
if TYPE_CHECKING:
    import asyncio

    from grpclib.server import Server

    from pysentry.config.configuration import Configuration
    from pysentry.security.events import SecurityEvents
    from pysentry.sidecar.app_channel import HttpAppChannel
    from pysentry.sidecar.grpc_app_channel import GrpcAppChannel
    from pysentry.sidecar.invocation import AppChannel, InvokeRequest, InvokeResponse
    from pysentry.sidecar.mtls import SidecarSecurity
    from pysentry.sidecar.resolver import SidecarResolver

log = logging.getLogger("pysentry.sidecar")


async def start_security(
    opts: Options, cfg: Configuration | None, events: SecurityEvents
) -> SidecarSecurity:
    from pysentry.sidecar.mtls import SidecarSecurity

    try:
        return await SidecarSecurity.start(opts, cfg, events)
    except SentryUnavailable as err:
        identity_failed(opts, cfg, err)


async def run(opts: Options, early: Early | None = None) -> None:
    """daprd on the event loop; ``early``: what ``early_start()`` did before it (else all)."""
    import asyncio

    loop = asyncio.get_running_loop()
    started = early.started if early is not None else time.monotonic()
    loop.call_later(max(0.0, START_GC_OFF_LIMIT_S - (time.monotonic() - started)), gc.enable)
    cfg: Configuration | None = None
    security: SidecarSecurity | None = None
    if early is not None:
        from pysentry.sidecar.mtls import Identity, SidecarSecurity

        mtls, sockets, security_events = True, early.sockets, early.events
        identity = Identity(early.svid, early.anchors, fastpath=opts.fastpath)
        security = SidecarSecurity(early.provider, early.anchors, identity)
    else:
        started = announce(opts)
        if opts.mode == "kubernetes":
            from pysentry.sidecar.kubernetes import prepare

            opts, cfg = await prepare(opts)
        elif identity_first(opts):
            check_config_file(opts)
        else:
            cfg = load_config(opts)
        mtls = opts.enable_mtls or (cfg is not None and cfg.spec.mtls.enabled)
        sockets = bind_sockets(opts)
        # The mTLS counters are kept until the metrics (prometheus_client) are built, after the
        # first identity.
        security_events = EarlySecurityMetrics()
        if mtls:
            security = await start_security(opts, cfg, security_events)
        else:
            logging.getLogger("pysentry.sidecar.mtls").warning(
                "mTLS is disabled. Skipping certificate request and tls validation"
            )
    http_socks, internal_sock, api_grpc_socks = sockets.http, sockets.internal, sockets.api_grpc
    internal_port = internal_sock.getsockname()[1]
    metrics_sock = sockets.metrics
    metrics_port = metrics_sock.getsockname()[1] if metrics_sock is not None else 0
    from pysentry.sidecar.metrics import SidecarMetrics

    metrics = SidecarMetrics(opts.app_id)
    security_events.attach(metrics.security)
    recorder = metrics if opts.enable_metrics else None
    if cfg is None:
        cfg = load_config(opts)

    from aiohttp import web
    from grpclib.server import Server

    from pysentry.config.acl import AccessControlList
    from pysentry.sidecar.app_channel import HttpAppChannel
    from pysentry.sidecar.app_dial import wait_for_app
    from pysentry.sidecar.direct import DirectMessaging
    from pysentry.sidecar.fastpath_protocol import max_payload as fastpath_max_payload
    from pysentry.sidecar.grpc_api import DaprApi, api_server
    from pysentry.sidecar.grpc_app_channel import GrpcAppChannel
    from pysentry.sidecar.grpc_metrics import instrument
    from pysentry.sidecar.grpc_proxy import CalleeProxy, CallerProxy, with_fallback
    from pysentry.sidecar.http_api import ApiSettings, HttpApi
    from pysentry.sidecar.internal_client import InternalClient, plaintext_channel
    from pysentry.sidecar.internal_server import ServiceInvocation
    from pysentry.sidecar.resolver import Registration, resolver_from_config

    acl = AccessControlList.from_spec(cfg.spec.access_control, http=opts.app_protocol == "http")
    app_channel: HttpAppChannel | GrpcAppChannel | None = None
    if opts.app_port and opts.app_protocol == "grpc":
        app_channel = GrpcAppChannel(
            opts.app_port, address=opts.app_channel_address, app_api_token=opts.app_api_token
        )
    elif opts.app_port:
        app_channel = HttpAppChannel(
            opts.app_port, address=opts.app_channel_address, app_api_token=opts.app_api_token
        )
    resolver = resolver_from_config(cfg, internal_port=internal_port)
    fast_payload = fastpath_max_payload(opts.max_body_size) if opts.fastpath else None
    client = InternalClient(
        channel_factory=security.channel_factory() if security else plaintext_channel,
        max_connection_age=opts.internal_connection_max_age,
        fastpath=security.fastpath_dialer(fast_payload) if security and fast_payload else None,
    )
    direct = DirectMessaging(
        app_id=opts.app_id,
        namespace=opts.namespace,
        resolver=resolver,
        client=client,
        local=app_channel,
        metrics=recorder,
    )
    local: AppChannel = app_channel if app_channel is not None else _NoApp()
    service = ServiceInvocation(
        local,
        app_id=opts.app_id,
        acl=acl if acl.configured else None,
        on_decision=metrics.acl_decision,
        metrics=recorder,
    )
    local_grpc = app_channel.channel if isinstance(app_channel, GrpcAppChannel) else None
    callee_proxy = CalleeProxy(
        app_id=opts.app_id,
        local=local_grpc,
        identify=None,
        acl=acl if acl.configured else None,
        app_api_token=opts.app_api_token,
        on_decision=metrics.acl_decision,
    )
    grpc_server: Server
    if security is not None:
        from pysentry.sidecar.mtls import internal_server

        spiffe_server = internal_server(
            service, security.anchors, fastpath_max_payload=fast_payload
        )
        callee_proxy.set_identifier(spiffe_server.peer_id)
        grpc_server = spiffe_server
    else:
        grpc_server = Server([service])
    with_fallback(grpc_server, callee_proxy.handler)
    if recorder is not None:
        instrument(grpc_server, recorder, api=False)
    await grpc_server.start(sock=internal_sock, ssl=security.server_context if security else None)
    log.info("Internal gRPC server is running on port %d", internal_port)

    app_ready = asyncio.Event()
    waiting: asyncio.Task[None] | None = None
    if opts.app_port:
        waiting = asyncio.create_task(
            wait_for_app(opts.app_channel_address, opts.app_port, opts.app_protocol)
        )

        def found(task: asyncio.Task[None]) -> None:
            if not task.cancelled():
                app_ready.set()

        waiting.add_done_callback(found)
    else:
        app_ready.set()
    extended: dict[str, str] = {}
    dapr_api = DaprApi(
        app_id=opts.app_id,
        namespace=opts.namespace,
        invoker=direct,
        extended=extended,
        app_connection=lambda: (opts.app_port or 0, opts.app_protocol, opts.app_channel_address),
        api_token=opts.api_token,
        max_body_size=opts.max_body_size,
    )
    caller_proxy = CallerProxy(
        app_id=opts.app_id,
        namespace=opts.namespace,
        resolver=resolver,
        dial=security.channel_factory() if security else plaintext_channel,
        local=local_grpc,
        check_token=dapr_api.check_token,
        metrics=recorder,
    )
    api_grpcs = [api_server(dapr_api, caller_proxy) for _ in api_grpc_socks]  # one per address
    for api_grpc, api_grpc_sock in zip(api_grpcs, api_grpc_socks, strict=True):
        if recorder is not None:
            instrument(api_grpc, recorder, api=True)
        await api_grpc.start(sock=api_grpc_sock)
    logging.getLogger("pysentry.sidecar.grpc_api").info(
        "gRPC server listening on TCP address: :%d", api_grpc_socks[0].getsockname()[1]
    )
    api = HttpApi(
        ApiSettings(
            app_id=opts.app_id,
            namespace=opts.namespace,
            app_port=opts.app_port,
            http_port=opts.dapr_http_port,
            internal_grpc_port=internal_port,
            mtls_enabled=mtls,
            api_token=opts.api_token,
            max_body_size=opts.max_body_size,
            app_protocol=opts.app_protocol,
        ),
        direct,
        identity=security.identity_info if security else (lambda: None),
        ready=app_ready.is_set,
        extended=extended,
        metrics=recorder,
    )
    runners: list[web.AppRunner] = []
    sites = [(api.app(), http_socks)]
    if metrics_sock is not None:
        sites.append((metrics.app(), [metrics_sock]))
    for app, socks in sites:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        for sock in socks:
            await web.SockSite(runner, sock).start()
        runners.append(runner)
    log.info("HTTP server is running on port %d", opts.dapr_http_port)
    if metrics_sock is not None:
        log.info("metrics server started on :%d/", metrics_port)

    def registration() -> Registration:
        ident = security.identity_info() if security else None
        return Registration(
            app_id=opts.app_id,
            namespace=opts.namespace,
            address=f"{_advertised(opts.dapr_internal_grpc_listen_address)}:{internal_port}",
            pid=os.getpid(),
            http_port=opts.dapr_http_port,
            metrics_port=metrics_port,
            app_port=opts.app_port or 0,
            spiffe_id=ident[0] if ident else "",
            cert_expiry_at=ident[1] if ident else None,
        )

    resolver.register(registration())
    rotated = asyncio.Event()
    if security is not None:
        security.subscribe(rotated.set)
    log.info(
        "dapr initialized. Status: Running. Init Elapsed %dms",
        int((time.monotonic() - started) * 1000),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(SETTLE_GC_AFTER_S, settle_gc)  # after the first health checks are answered
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(resolver.run())
            if security is not None:
                tg.create_task(security.run())
                tg.create_task(_publish_identity(security, resolver, rotated))
            waiter = tg.create_task(stop.wait())
            await waiter
            raise _Shutdown
    except* _Shutdown:
        pass
    finally:
        if waiting is not None:
            waiting.cancel()
        log.info("Shutting down: unregistering %r from name resolution", opts.app_id)
        try:
            resolver.unregister()
        except Exception as err:  # shutdown carries on whatever the database says
            log.warning(
                "Failed to unregister %r from name resolution: %s; the row goes stale after "
                "one update interval",
                opts.app_id,
                err,
            )
        resolver.close()
        grpc_server.close()
        for api_grpc in api_grpcs:
            api_grpc.close()
        caller_proxy.close()
        for runner in runners:
            await runner.cleanup()
        client.close()
        if app_channel is not None:
            await app_channel.close()
        try:
            await asyncio.wait_for(grpc_server.wait_closed(), 5)
        except Exception as err:  # exiting anyway: say why it was not clean
            log.warning("Internal gRPC server did not close cleanly: %r", err)
    log.info("Dapr shut down gracefully")


async def _publish_identity(
    security: SidecarSecurity, resolver: SidecarResolver, rotated: asyncio.Event
) -> None:
    """Write each rotated identity to name resolution (read by ``dapr list``), off the loop."""
    import asyncio
    import sqlite3

    while True:
        await rotated.wait()
        rotated.clear()
        if (ident := security.identity_info()) is None:
            continue
        try:
            await asyncio.to_thread(resolver.update_identity, *ident)
        except sqlite3.Error as err:
            log.warning(
                "Failed to publish the rotated identity to name resolution: %s; "
                "the next heartbeat writes it",
                err,
            )


class _Shutdown(Exception):
    pass


class _NoApp:
    async def call(self, request: InvokeRequest) -> InvokeResponse:
        from pysentry.sidecar.invocation import InvocationError

        raise InvocationError("app channel is not initialized: no --app-port")


def _advertised(listen: str) -> str:
    return "127.0.0.1" if listen in ("", "0.0.0.0", "::", "[::]") else listen
