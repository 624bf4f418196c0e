"""``dapr run``: start daprd and the app side by side (self-hosted).

When the configuration enables mTLS, daprd gets ``--enable-mtls``, ``--sentry-address
localhost:50001`` (unless given) and ``--trust-anchors-file <credentials>/ca.crt`` (watched, so a
root rotation needs no restart), unless ``DAPR_TRUST_ANCHORS`` is already exported. The app gets
``APP_ID``, ``APP_PORT``, ``DAPR_HTTP_PORT`` and ``DAPR_METRICS_PORT``. App output is prefixed
``== APP == ``; daprd's log lines are copied as they are, as Dapr's CLI does. SIGINT/SIGTERM are
forwarded; when either process ends the other is stopped. The exit code is the app's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from pysentry.cli import console
from pysentry.cli.configfile import read_mtls
from pysentry.cli.console import CliError
from pysentry.cli.home import DEFAULT_SENTRY_ADDRESS, DaprHome
from pysentry.cli.procs import Child, exit_code, free_port, wait_daprd

APP_PREFIX = "== APP == "
DAPRD_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    daprd_argv: tuple[str, ...]
    daprd_env: dict[str, str]
    app_argv: tuple[str, ...]
    app_env: dict[str, str]
    http_port: int
    internal_port: int
    mtls: bool


def plan(
    home: DaprHome,
    *,
    app_id: str,
    app_port: int | None,
    http_port: int | None,
    internal_port: int | None,
    metrics_port: int | None,
    config: Path | None,
    sentry_address: str | None,
    issuer_credentials: Path | None,
    log_level: str,
    command: list[str],
) -> Plan:
    """Everything ``dapr run`` will start, computed before anything starts."""
    config_path = (config or home.config_file).expanduser().absolute()
    settings = read_mtls(config_path, required=config is not None)
    http = http_port or free_port()
    internal = internal_port or free_port()
    metrics = metrics_port or free_port()
    argv = [
        sys.executable,
        "-m",
        "pysentry.sidecar.main",
        "--app-id",
        app_id,
        "--dapr-http-port",
        str(http),
        "--dapr-internal-grpc-port",
        str(internal),
        "--metrics-port",
        str(metrics),
        "--log-level",
        log_level,
    ]
    if app_port:
        argv += ["--app-port", str(app_port)]
    if config_path.exists():
        argv += ["--config", str(config_path)]
    env = dict(os.environ)
    if settings.enabled:
        argv += ["--enable-mtls", "--sentry-address", sentry_address or DEFAULT_SENTRY_ADDRESS]
        if not env.get("DAPR_TRUST_ANCHORS"):
            anchors = (issuer_credentials or home.certs_dir).expanduser().absolute() / "ca.crt"
            if not anchors.is_file():
                raise CliError(
                    f"mTLS is enabled in {str(config_path)!r} but the trust anchors file "
                    f"{str(anchors)!r} does not exist: start Sentry first, e.g. 'sentry "
                    f"--issuer-credentials {anchors.parent} --trust-domain cluster.local'"
                )
            argv += ["--trust-anchors-file", str(anchors)]
    elif sentry_address:
        argv += ["--sentry-address", sentry_address]
    app_env = dict(os.environ)
    app_env.update(APP_ID=app_id, DAPR_HTTP_PORT=str(http), DAPR_METRICS_PORT=str(metrics))
    if app_port:
        app_env["APP_PORT"] = str(app_port)
    return Plan(tuple(argv), env, tuple(command), app_env, http, internal, settings.enabled)


async def supervise(p: Plan, app_id: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    console.info(
        f"Starting Dapr with id {app_id}. HTTP Port: {p.http_port}. "
        f"Internal gRPC Port: {p.internal_port}" + (". mTLS: enabled" if p.mtls else "")
    )
    daprd = await Child.start("daprd", p.daprd_argv, p.daprd_env, "")
    app: Child | None = None
    try:
        ready = asyncio.create_task(wait_daprd(p.http_port, app_id, daprd, DAPRD_READY_TIMEOUT_S))
        await asyncio.wait(
            {ready, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if stop.is_set():
            ready.cancel()
            return exit_code(await daprd.stop(received[0]))
        if not ready.result():
            code = daprd.proc.returncode
            reason = (
                f"exited with code {code}"
                if code is not None
                else (f"did not answer on port {p.http_port} within {DAPRD_READY_TIMEOUT_S:.0f}s")
            )
            raise CliError(f"daprd {reason}; see its log lines above")
        if not p.app_argv:
            console.success("You're up and running! Dapr logs will appear here.")
        else:
            console.info(f"Updating metadata for app command: {' '.join(p.app_argv)}")
            try:
                app = await Child.start("app", p.app_argv, p.app_env, APP_PREFIX)
            except OSError as err:
                raise CliError(
                    f"cannot start app command {p.app_argv[0]!r}: {err.strerror}"
                ) from err
            console.success("You're up and running! Both Dapr and your app logs will appear here.")
        waits = {asyncio.create_task(daprd.proc.wait()), asyncio.create_task(stop.wait())}
        if app is not None:
            waits.add(asyncio.create_task(app.proc.wait()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return await _finish(daprd, app, received)
    finally:
        if app is not None:
            await app.stop()
        await daprd.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _finish(daprd: Child, app: Child | None, received: list[int]) -> int:
    if received:
        sig = received[0]
        console.info(f"Received signal {signal.Signals(sig).name}: stopping the app and daprd")
        app_code = await app.stop(sig) if app is not None else None
        daprd_code = await daprd.stop()
        console.success(
            "Exited Dapr successfully"
            if daprd_code in (0, 128 + signal.SIGTERM)
            else f"Exited Dapr with code {daprd_code}"
        )
        return app_code if app_code is not None else 0
    if app is not None and app.proc.returncode is not None:
        app_code = exit_code(app.proc.returncode)
        if app_code == 0:
            console.success("Exited App successfully")
        else:
            console.info(f"The App process exited with error code: {app_code}")
        await daprd.stop()
        console.success("Exited Dapr successfully")
        return app_code
    daprd_code = exit_code(daprd.proc.returncode or 0)
    if app is not None:
        await app.stop()
        console.info("Stopped the app because daprd exited")
    raise CliError(f"The daprd process exited with error code: {daprd_code}")


def run_command(
    ctx: typer.Context,
    app_id: Annotated[
        str,
        typer.Option(
            "--app-id", "-a", help="The id for your application, used for service discovery"
        ),
    ],
    app_port: Annotated[
        int | None,
        typer.Option("--app-port", "-p", help="The port your application is listening on"),
    ] = None,
    dapr_http_port: Annotated[
        int | None,
        typer.Option(
            "--dapr-http-port",
            "-H",
            help="The HTTP port for Dapr to listen on (default: a free port)",
        ),
    ] = None,
    dapr_internal_grpc_port: Annotated[
        int | None,
        typer.Option(
            "--dapr-internal-grpc-port",
            "-I",
            help="The gRPC port for the Dapr internal API (default: a free port)",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", "-M", help="The port of metrics on dapr (default: a free port)"
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Dapr configuration file (default: $HOME/.dapr/config.yaml)"
        ),
    ] = None,
    sentry_address: Annotated[
        str | None,
        typer.Option(
            "--sentry-address",
            help="Address of Sentry when mTLS is enabled (default: localhost:50001)",
        ),
    ] = None,
    issuer_credentials: Annotated[
        Path | None,
        typer.Option(
            "--issuer-credentials",
            help="Credentials directory whose ca.crt daprd trusts (default: $HOME/.dapr/certs)",
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option("--log-level", help="The log verbosity of daprd: debug, info, warn, error"),
    ] = "info",
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The app command, after '--' (or without it, as Dapr accepts)"),
    ] = None,
) -> None:
    """Run Dapr and (optionally) your application side by side."""
    home: DaprHome = ctx.find_root().obj
    argv = list(command or []) + list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    p = plan(
        home,
        app_id=app_id,
        app_port=app_port,
        http_port=dapr_http_port,
        internal_port=dapr_internal_grpc_port,
        metrics_port=metrics_port,
        config=config,
        sentry_address=sentry_address,
        issuer_credentials=issuer_credentials,
        log_level=log_level,
        command=argv,
    )
    raise typer.Exit(asyncio.run(supervise(p, app_id)))
