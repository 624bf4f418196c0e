"""``python -m pysentry.injector``: the sidecar injector webhook (see ``docs/kubernetes.md``).

Settings come from the environment as the chart sets them: ``NAMESPACE`` (the control-plane
namespace, required), ``SIDECAR_IMAGE`` (required), ``SENTRY_ADDRESS``,
``DAPR_CONTROL_PLANE_TRUST_DOMAIN`` (default ``cluster.local``) and ``KUBE_CLUSTER_DOMAIN``
(default ``cluster.local``).
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
from pysentry.injector.cabundle import CaBundleKeeper
from pysentry.injector.patch import InjectorConfig
from pysentry.injector.server import Injector, make_app, server_context
from pysentry.kube.client import KubeClient

log = logging.getLogger("pysentry.injector")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="injector", description="Dapr sidecar injector (pysentry)")
    p.add_argument("--port", type=int, default=4000, help="The port the webhook listens on")
    p.add_argument("--listen-address", default="0.0.0.0", help="The address to listen on")
    p.add_argument("--tls-cert-file", required=True, help="PEM certificate the webhook serves")
    p.add_argument("--tls-key-file", required=True, help="PEM key of --tls-cert-file")
    p.add_argument(
        "--webhook-ca-file",
        default=None,
        help="CA (PEM) of --tls-cert-file: set as the caBundle of the MutatingWebhookConfiguration "
        "dapr-sidecar-injector at start and whenever the file changes",
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


async def serve(args: argparse.Namespace, config: InjectorConfig) -> None:
    for flag, path in (
        ("--tls-cert-file", args.tls_cert_file),
        ("--tls-key-file", args.tls_key_file),
    ):
        if not Path(path).is_file():
            raise ConfigError(f"injector: {flag} {path!r}: no such file")
    context = server_context(args.tls_cert_file, args.tls_key_file)
    async with await KubeClient.connect(args.kubeconfig) as kube:
        keeper = CaBundleKeeper(kube, Path(args.webhook_ca_file)) if args.webhook_ca_file else None
        if keeper is not None:
            await keeper.start()
            keeping = asyncio.create_task(keeper.run())
        runner = web.AppRunner(make_app(Injector(config, kube)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.listen_address, args.port, ssl_context=context).start()
        log.info("Sidecar injector is listening on %s:%d", args.listen_address, args.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            if keeper is not None:
                keeping.cancel()
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        logs.configure(args.log_level, scope="dapr.injector")
        config = load_config(os.environ)
        asyncio.run(serve(args, config))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
