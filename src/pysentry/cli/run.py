"""``dapr run``: start daprd and the app side by side (self-hosted), as Dapr 1.16's CLI does.

The command line is parsed with Dapr's flag table (:mod:`pysentry.cli.runflags`); the plan
(:mod:`pysentry.cli.runplan`) picks the ports and the app-id. When the configuration enables
mTLS, daprd gets ``--enable-mtls``, ``--sentry-address localhost:50001`` (unless given) and
``--trust-anchors-file <credentials>/ca.crt`` (watched), unless ``DAPR_TRUST_ANCHORS`` is set.
Once daprd answers and the app started, the CLI stores ``cliPID``, ``appPID`` and
``appCommand`` in daprd's metadata (``PUT /v1.0/metadata/<key>``), as Dapr's CLI does, which is
what ``dapr list`` and ``dapr stop`` read. App output is prefixed ``== APP == ``; daprd's lines
are copied as they are. SIGINT/SIGTERM are forwarded; when either process ends the other is
stopped. The exit code is the app's.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import typer

from pysentry.cli import console, metaclient
from pysentry.cli.console import CliError
from pysentry.cli.home import DAPR_DIR_NAME, DaprHome
from pysentry.cli.mtls import refuse_kubernetes
from pysentry.cli.procs import Child, exit_code, wait_daprd
from pysentry.cli.runflags import RUN_FILE_FLAGS, RunArgs, help_text, parse_run_args
from pysentry.cli.runplan import InUse, Plan, ignored_warning, plan
from pysentry.cli.sidecars import discover
from pysentry.errors import ConfigError

APP_PREFIX = "== APP == "
DAPRD_READY_TIMEOUT_S = 30.0
GRPC_WAIT_S = 10.0  # after daprd's HTTP API answers
#: daprd's own shutdown budget is 5 s (Dapr's --dapr-graceful-shutdown-seconds); then SIGKILL
DAPRD_STOP_GRACE_S = 10.0


def in_use(home: DaprHome, config: str) -> InUse:
    """App-ids and ports of the running sidecars (a broken nr.db is ignored here)."""
    path = Path(config).expanduser() if config else home.config_file
    try:
        found = discover(path, home.root, with_metadata=False)
    except (CliError, ConfigError):
        return InUse()
    ports = {p for s in found for p in (s.http_port, s.grpc_port, s.app_port) if p > 0}
    return InUse(frozenset(s.app_id for s in found), frozenset(ports))


def put_metadata(p: Plan, key: str, value: str, label: str) -> bool:
    try:
        metaclient.put(p.http_port, key, value)
    except metaclient.MetadataError as err:
        console.warning(f"Could not update sidecar metadata for {label}: {err}")
        return False
    return True


async def store_run_metadata(p: Plan, app: Child | None, extra: dict[str, str]) -> bool:
    """cliPID, appPID and appCommand (plus ``extra``, e.g. the run template path)."""
    ok = await asyncio.to_thread(put_metadata, p, "cliPID", str(os.getpid()), "cliPID")
    for key, value in extra.items():
        ok = await asyncio.to_thread(put_metadata, p, key, value, key) and ok
    if app is None:
        return ok
    console.info(f"Updating metadata for appPID: {app.pid}")
    ok = await asyncio.to_thread(put_metadata, p, "appPID", str(app.pid), "appPID") and ok
    command = " ".join(p.app_argv)
    console.info(f"Updating metadata for app command: {command}")
    return await asyncio.to_thread(put_metadata, p, "appCommand", command, "appCommand") and ok


def starting_line(p: Plan) -> str:
    return f"Starting Dapr with id {p.app_id}. HTTP Port: {p.http_port}. gRPC Port: {p.grpc_port}"


async def start_app(
    p: Plan, prefix: str, *, console_out: bool = True, log_file: TextIO | None = None
) -> Child:
    cwd = str(p.cwd) if p.cwd is not None else None
    try:
        return await Child.start(
            "app", p.app_argv, p.app_env, prefix, cwd=cwd, console=console_out, log_file=log_file
        )
    except OSError as err:
        raise CliError(f"cannot start app command {p.app_argv[0]!r}: {err.strerror}") from err


async def wait_ready(p: Plan, daprd: Child, stop: asyncio.Event) -> bool:
    """True once daprd answers; False if a signal came first; CliError if daprd failed."""
    ready = asyncio.create_task(wait_daprd(p.http_port, p.app_id, daprd, DAPRD_READY_TIMEOUT_S))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({ready, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if stop.is_set():
        ready.cancel()
        return False
    if not ready.result():
        code = daprd.proc.returncode
        reason = (
            f"exited with code {code}"
            if code is not None
            else f"did not answer on port {p.http_port} within {DAPRD_READY_TIMEOUT_S:.0f}s"
        )
        raise CliError(f"daprd {reason}; see its log lines above")
    return True


async def _listening(port: int, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return True


async def check_sidecar(p: Plan) -> None:
    """Dapr's check before an app without a port starts: daprd's HTTP and gRPC ports."""
    up = True
    for label, port in (("HTTP", p.http_port), ("GRPC", p.grpc_port)):
        console.info(f"Checking if Dapr sidecar is listening on {label} port {port}")
        if not await _listening(port, GRPC_WAIT_S):
            up = False
            console.warning(f"Dapr sidecar is not listening on {label} port: {port} is closed")
    if up:
        console.info("Dapr sidecar is up and running.")
    else:
        console.warning("Dapr sidecar might not be responding.")


async def supervise(p: Plan) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    console.info(starting_line(p))
    if p.mtls:
        console.info("mTLS is enabled: daprd gets its certificate from Sentry")
    daprd = await Child.start("daprd", p.daprd_argv, p.daprd_env, "")
    app: Child | None = None
    try:
        if not await wait_ready(p, daprd, stop):
            return exit_code(await daprd.stop(received[0], DAPRD_STOP_GRACE_S))
        if p.app_port <= 0:
            await check_sidecar(p)
        if p.app_argv:
            app = await start_app(p, APP_PREFIX)
        if await store_run_metadata(p, app, {}) or app is None:
            both = "Both Dapr and your app logs" if app is not None else "Dapr logs"
            console.success(f"You're up and running! {both} will appear here.\n")
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
        await daprd.stop(grace_s=DAPRD_STOP_GRACE_S)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _finish(daprd: Child, app: Child | None, received: list[int]) -> int:
    if received:
        sig = received[0]
        console.info(f"Received signal {signal.Signals(sig).name}: stopping the app and daprd")
        console.info("\nterminated signal received: shutting down")
        app_code = await app.stop(sig) if app is not None else None
        daprd_code = await daprd.stop(grace_s=DAPRD_STOP_GRACE_S)
        console.success(
            "Exited Dapr successfully"
            if daprd_code in (0, 128 + signal.SIGTERM)
            else f"Exited Dapr with code {daprd_code}"
        )
        if app is not None:
            console.success("Exited App successfully")
        return app_code if app_code is not None else 0
    if app is not None and app.proc.returncode is not None:
        app_code = exit_code(app.proc.returncode)
        if app_code == 0:
            console.success("Exited App successfully")
        else:
            console.info(f"The App process exited with error code: {app_code}")
        await daprd.stop(grace_s=DAPRD_STOP_GRACE_S)
        console.success("Exited Dapr successfully")
        return app_code
    daprd_code = exit_code(daprd.proc.returncode or 0)
    if app is not None:
        await app.stop()
        console.info("Stopped the app because daprd exited")
    raise CliError(f"The daprd process exited with error code: {daprd_code}")


def run_main(home: DaprHome, argv: Sequence[str]) -> int:
    """``dapr run <argv>``: returns the exit code."""
    args = parse_run_args(argv)
    if args.bool_("help"):
        print(help_text())
        return 0
    if args.bool_("log-as-json"):
        console.enable_json()
    if args.str_("runtime-path"):  # Dapr: the installation in <runtime-path>/.dapr
        home = DaprHome.resolve(Path(args.str_("runtime-path")) / DAPR_DIR_NAME)
    if args.str_("run-file"):
        return _run_file(home, args)
    refuse_kubernetes(args.bool_("kubernetes"))
    if not args.command:
        print("WARNING: no application command found.")
    p = plan(home, args, in_use=in_use(home, args.str_("config")))
    if p.ignored:
        console.warning(ignored_warning(p.ignored))
    return asyncio.run(supervise(p))


def _run_file(home: DaprHome, args: RunArgs) -> int:
    from pysentry.cli.multirun import run_template

    ignored = [name for name in args.given if name not in RUN_FILE_FLAGS]
    if ignored:
        console.warning(
            "The following flags are ignored when using --run-file and should be configured in "
            "the run file instead: " + ", ".join(ignored)
        )
    if args.bool_("kubernetes"):
        refuse_kubernetes(True)
    return run_template(home, args.str_("run-file"))


def run_command(ctx: typer.Context) -> None:
    """Run Dapr and (optionally) your application side by side (see 'dapr run --help')."""
    # main() hands ``dapr run`` its raw arguments; this serves callers of the typer app itself.
    raise typer.Exit(run_main(ctx.find_root().obj, ctx.args))
