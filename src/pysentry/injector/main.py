"""``python -m pysentry.injector``: the sidecar injector webhook (see ``docs/kubernetes.md``).

Settings come from the environment as the chart sets them: ``NAMESPACE`` (the control-plane
namespace, required), ``SIDECAR_IMAGE`` (required), ``SENTRY_ADDRESS``,
``DAPR_CONTROL_PLANE_TRUST_DOMAIN`` (default ``cluster.local``) and ``KUBE_CLUSTER_DOMAIN``
(default ``cluster.local``).

The serving certificate comes from Sentry (Dapr's way, :mod:`pysentry.injector.sentry_tls`,
with ``DAPR_TRUST_ANCHORS_FILE`` and ``DAPR_SENTRY_TOKEN_FILE``) and the webhook's ``caBundle``
follows the trust anchors; with ``--tls-cert-file``/``--tls-key-file`` it is served from files
instead (e.g. cert-manager's Secret) and ``--webhook-ca-file`` is the caBundle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiohttp import web

from pysentry import logs
from pysentry.errors import ConfigError
from pysentry.injector.cabundle import WEBHOOK_CONFIG, CaBundleKeeper
from pysentry.injector.patch import InjectorConfig
from pysentry.injector.sentry_tls import SentrySettings, obtain_identity
from pysentry.injector.server import Injector, make_app, server_context
from pysentry.kube.client import KubeClient
from pysentry.security.anchors import FileAnchors

log = logging.getLogger("pysentry.injector")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="injector", description="Dapr sidecar injector (pysentry)")
    p.add_argument("--port", type=int, default=4000, help="The port the webhook listens on")
    p.add_argument("--listen-address", default="0.0.0.0", help="The address to listen on")
    p.add_argument(
        "--tls-cert-file",
        default=None,
        help="PEM certificate the webhook serves instead of one from Sentry (with --tls-key-file)",
    )
    p.add_argument("--tls-key-file", default=None, help="PEM key of --tls-cert-file")
    p.add_argument(
        "--webhook-ca-file",
        default=None,
        help="with --tls-cert-file: the CA (PEM) of that certificate, set as the webhook's "
        "caBundle at start and whenever the file changes",
    )
    p.add_argument(
        "--webhook-configuration",
        default=WEBHOOK_CONFIG,
        help="The MutatingWebhookConfiguration whose caBundle the injector keeps current",
    )
    p.add_argument("--kubeconfig", default=None, help="Path to a kubeconfig (outside a cluster)")
    p.add_argument("--log-level", default="info", help="debug, info, warn, error or fatal")
    return p.parse_args(list(argv))


def load_config(env: Mapping[str, str]) -> InjectorConfig:
    missing = [name for name in ("NAMESPACE", "SIDECAR_IMAGE") if not env.get(name)]
    if missing:
        raise ConfigError(
            f"injector: environment variable(s) {', '.join(missing)} not set: NAMESPACE is the "
            "control-plane namespace, SIDECAR_IMAGE the daprd image (the chart sets both)"
        )
    return InjectorConfig(
        control_plane_namespace=env["NAMESPACE"],
        trust_domain=env.get("DAPR_CONTROL_PLANE_TRUST_DOMAIN") or "cluster.local",
        sidecar_image=env["SIDECAR_IMAGE"],
        sentry_address=env.get("SENTRY_ADDRESS", ""),
        cluster_domain=env.get("KUBE_CLUSTER_DOMAIN") or "cluster.local",
    )


def check_tls_files(args: argparse.Namespace) -> bool:
    """Whether the certificate comes from files (both flags) rather than from Sentry."""
    given = [f for f, v in (("--tls-cert-file", args.tls_cert_file),
                            ("--tls-key-file", args.tls_key_file)) if v]  # fmt: skip
    if len(given) == 1:
        raise ConfigError(
            f"injector: {given[0]} given alone: pass both --tls-cert-file and --tls-key-file, or "
            "neither to get the serving certificate from Sentry"
        )
    if not given:
        if args.webhook_ca_file:
            raise ConfigError(
                "injector: --webhook-ca-file needs --tls-cert-file: with a certificate from "
                "Sentry the caBundle is the trust anchors (DAPR_TRUST_ANCHORS_FILE)"
            )
        return False
    for flag, path in (("--tls-cert-file", args.tls_cert_file),
                       ("--tls-key-file", args.tls_key_file)):  # fmt: skip
        if not Path(path).is_file():
            raise ConfigError(f"injector: {flag} {path!r}: no such file")
    return True


async def serve(args: argparse.Namespace, config: InjectorConfig, env: Mapping[str, str]) -> None:
    from_files = check_tls_files(args)
    tasks: list[asyncio.Task[None]] = []
    async with await KubeClient.connect(args.kubeconfig) as kube:
        name = args.webhook_configuration
        keeper = None
        if from_files:
            context = server_context(args.tls_cert_file, args.tls_key_file)
            if args.webhook_ca_file:
                keeper = CaBundleKeeper(kube, FileAnchors(args.webhook_ca_file), config=name)
        else:
            settings = SentrySettings.from_env(
                env,
                address=config.sentry,
                namespace=config.control_plane_namespace,
                trust_domain=config.trust_domain,
            )
            identity = await obtain_identity(settings)
            assert identity.server is not None
            context = identity.server.listener
            keeper = CaBundleKeeper(
                kube, identity.anchors, config=name, before_patch=identity.renew_now
            )
            tasks.append(asyncio.create_task(identity.run()))
        stop = _stop_on_signals()  # until here SIGTERM ends the process at once (nothing to undo)
        runner = web.AppRunner(make_app(Injector(config, kube)), access_log=None)
        try:
            if keeper is not None:
                await keeper.start()
                tasks.append(asyncio.create_task(keeper.run()))
            for task in tasks:  # neither returns: if one ends, the injector stops
                task.add_done_callback(lambda _: stop.set())
            await runner.setup()
            await web.TCPSite(runner, args.listen_address, args.port, ssl_context=context).start()
            log.info("Sidecar injector is listening on %s:%d", args.listen_address, args.port)
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await runner.cleanup()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("injector: a background task failed") from task.exception()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        logs.configure(args.log_level, scope="dapr.injector")
        config = load_config(os.environ)
        asyncio.run(serve(args, config, os.environ))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
