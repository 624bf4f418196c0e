"""The ``sentry`` command: Dapr's certificate authority (standalone mode).

Startup, with Dapr's log lines (spec §3): configuration, file store (load, or generate when no file
exists), validators, metrics and healthz servers, Sentry's own SVID, the gRPC server, the
credentials watcher and the expiry warnings. SIGTERM/SIGINT stop the servers, then the tasks, and
log ``Sentry shut down gracefully``. Fatal startup problems log the reason and exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import disable_created_metrics

from pysentry import __version__, logs
from pysentry.config import (
    Configuration,
    format_duration,
    load_configuration,
    parse_configuration,
)
from pysentry.errors import ConfigError, PysentryError
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.flags import DEFAULT_CONFIG
from pysentry.sentry.frontend import listen_error, start_frontend
from pysentry.sentry.httpserve import PlainHttpServer, Route
from pysentry.sentry.identity import ServingIdentity
from pysentry.sentry.monitoring import (
    ExpiryWarnings,
    Health,
    SentryMetrics,
    healthz_routes,
    metrics_routes,
)
from pysentry.sentry.options import OptionsError, SentryOptions, parse_options
from pysentry.sentry.reload import CredentialsReloader
from pysentry.sentry.store import file_store, load_or_generate
from pysentry.sentry.validator_setup import build_validators
from pysentry.spiffe import TrustDomain

if TYPE_CHECKING:  # imported in Kubernetes mode only: its client costs ~45 MiB and 0.25 s
    from pysentry.sentry.k8s_mode import KubernetesMode
    from pysentry.sentry.kubernetes import TrustBundleWatcher

log = logging.getLogger("pysentry.sentry")

COMMIT = "pysentry"


def load_config(options: SentryOptions) -> Configuration:
    path = Path(options.config)
    if not options.config_explicit and options.config == DEFAULT_CONFIG and not path.exists():
        log.info(
            "Configuration file %r not found: using default configuration values", options.config
        )
        return parse_configuration("", options.config)
    return load_configuration(path)


async def _start_site(
    routes: dict[str, Route], host: str, port: int, flags: tuple[str, str | None]
) -> PlainHttpServer:
    server = PlainHttpServer(routes)
    try:
        await server.start(host, port)
    except OSError as err:
        raise listen_error(flags[0], host, port, err, flags[1]) from err
    return server


async def run(options: SentryOptions) -> None:
    if options.mode != "kubernetes":
        await _run(options, None)
        return
    from pysentry.sentry.k8s_mode import KubernetesMode

    kube = await KubernetesMode.open(
        kubeconfig=options.kubeconfig if options.kubeconfig_explicit else None,
        names=(
            options.issuer_ca_filename,
            options.issuer_certificate_filename,
            options.issuer_key_filename,
        ),
    )
    try:
        await _run(options, kube)
    finally:
        await kube.close()


async def _run(options: SentryOptions, kube: KubernetesMode | None) -> None:
    config = await kube.load_config(options.config) if kube else load_config(options)
    mtls = config.spec.mtls
    if mtls.workload_cert_ttl <= mtls.allowed_clock_skew:
        log.info(
            "workloadCertTTL (%s) is not longer than allowedClockSkew (%s): certificates are "
            "renewed at half of the validity left when they arrive",
            format_duration(mtls.workload_cert_ttl),
            format_duration(mtls.allowed_clock_skew),
        )
    settings = CaSettings(
        trust_domain=TrustDomain.parse(options.trust_domain),
        namespace=options.namespace,
        workload_ttl=mtls.workload_cert_ttl,
        clock_skew=mtls.allowed_clock_skew,
        max_concurrent_signs=options.max_concurrent_signs,
    )
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = SentryMetrics()
    health = Health()
    if kube is None:
        log.info("Using local file system for trust bundle storage")
        store = file_store(options)
        loaded = await asyncio.to_thread(load_or_generate, store, options, settings)
        bundle = loaded.bundle
    else:
        log.info("Using kubernetes secret store for trust bundle storage")
        bundle = await kube.load_bundle(settings, options.ca_key_algorithm)
    metrics.ca_loaded(
        issuer_not_after=bundle.issuer_not_after, root_not_after=bundle.root_not_after
    )
    log.info("CA certificate key pair ready")
    validators, default = build_validators(config, options, kube, settings)
    for validator in validators.values():
        if validator.health_target is not None:
            health.add_target(validator.health_target)
    ca = CertificateAuthority(
        bundle, settings, validators=validators, default_validator=default, metrics=metrics
    )
    runners = [
        await _start_site(
            healthz_routes(health),
            options.healthz_listen_address,
            options.healthz_port,
            ("--healthz-port", "--healthz-listen-address"),
        )
    ]
    health.set_ready("healthz-server")
    if options.enable_metrics:
        runners.append(
            await _start_site(
                metrics_routes(metrics), "", options.metrics_port, ("--metrics-port", None)
            )
        )
    health.set_ready("metrics-exporter")
    if options.workers == 1:  # else every worker starts its own validators
        for validator in validators.values():
            await validator.start()
            if validator.health_target is not None:
                health.set_ready(validator.health_target, validator.ready())
    identity = ServingIdentity(ca, key_algorithm=options.ca_key_algorithm, metrics=metrics)
    await identity.start()
    health.set_ready("security-provider")
    try:
        frontend = await start_frontend(
            options,
            ca,
            identity,
            config=config,
            metrics=metrics,
            health=health,
            kube_namespace=kube.namespace if kube else None,
        )
    except BaseException:
        for runner in runners:
            await runner.close()
        raise
    log.info("Running gRPC server on port %d", options.port)
    reloader: CredentialsReloader | TrustBundleWatcher
    if kube is None:
        reloader = CredentialsReloader(
            store,
            ca,
            on_swap=frontend.on_swap,
            metrics=metrics,
            health=health,
            quiet_period=options.reload_quiet_period,
            loaded_version=loaded.version,
        )
    else:
        reloader = kube.watcher(
            ca,
            on_swap=frontend.on_swap,
            metrics=metrics,
            health=health,
            quiet_period=options.reload_quiet_period,
        )
    expiry = ExpiryWarnings(lambda: (ca.bundle.root_not_after, ca.bundle.issuer_not_after))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(c)
                for c in (
                    reloader.run(),
                    expiry.run(),
                    identity.run(),
                    *(v.run() for v in validators.values() if options.workers == 1),
                )
            ]
            await reloader.wait_ready()
            health.set_ready("sentry-server")
            await stop.wait()
            log.info("Sentry is shutting down")
            health.set_ready("sentry-server", False)
            await frontend.close()
            for runner in runners:
                await runner.close()
            for task in background:
                task.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await frontend.close()  # a no-op after a clean stop; else no worker outlives a failure
    log.info("Sentry shut down gracefully")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv)
        logs.configure(options.log_level, options.log_as_json, scope="dapr.sentry")
    except (OptionsError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    log.info(
        "Starting Dapr Sentry certificate authority -- version %s -- commit %s", __version__, COMMIT
    )
    log.info("Log level set to: %s", options.log_level)
    try:
        _run_loop(options)
    except KeyboardInterrupt:
        log.info("Sentry shut down gracefully")
    except (PysentryError, OSError, BaseExceptionGroup) as err:
        fatal = _fatal_error(err)
        if fatal is None:
            raise
        log.critical("Fatal error: %s", fatal)
        sys.exit(1)


def _run_loop(options: SentryOptions) -> None:
    """One event loop for the process: uvloop when it is installed, else asyncio's. With
    workers, the main process (which forks them) runs asyncio's: libuv's state does not survive
    a fork, and the main process does little once the workers sign."""
    if options.workers > 1:
        asyncio.run(run(options))
        return
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(options))
        return
    uvloop.run(run(options))


def _fatal_error(err: BaseException) -> BaseException | None:
    """The first expected error (bad files, config, port in use) inside ``err``, if any."""
    if isinstance(err, BaseExceptionGroup):
        for inner in err.exceptions:
            found = _fatal_error(inner)
            if found is not None:
                return found
        return None
    return err if isinstance(err, (PysentryError, OSError)) else None


if __name__ == "__main__":
    main()
