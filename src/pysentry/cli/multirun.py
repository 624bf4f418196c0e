"""``dapr run -f dapr.yaml``: every app of a run template, each with its daprd, stopped together.

As Dapr's ``executeRun``: the CLI becomes a process group leader (so ``dapr stop -f`` can signal
the whole run), starts the apps one by one (``Validating config and starting app "<id>"``),
writes their logs under ``<appDirPath>/.dapr/logs/<appID>_{app,daprd}_<timestamp>.log``
according to ``appLogDestination`` (default ``fileAndConsole``) and ``daprdLogDestination``
(default ``file``), prefixes app lines with ``== APP - <appID> == ``, and stores
``runTemplatePath``, ``runTemplateName``, ``appLogPath`` and ``daprdLogPath`` in each sidecar's
metadata next to ``cliPID``/``appPID``/``appCommand``. SIGINT or SIGTERM stops every app and
daprd. A failure to start one app stops those already started and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from pysentry.cli import console
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.procs import Child
from pysentry.cli.run import (
    DAPRD_STOP_GRACE_S,
    check_sidecar,
    in_use,
    start_app,
    store_run_metadata,
    wait_ready,
)
from pysentry.cli.runfile import AppSpec, Template, load_template, run_file_path
from pysentry.cli.runplan import InUse, Plan, ignored_warning, plan


@dataclass
class Running:
    spec: AppSpec
    plan: Plan
    daprd: Child
    app: Child | None
    files: list[TextIO]


def _log_file(spec: AppSpec, kind: str, stamp: str) -> TextIO:
    directory = spec.app_dir / ".dapr" / "logs"
    directory.mkdir(parents=True, exist_ok=True)
    return (directory / f"{spec.app_id}_{kind}_{stamp}.log").open("a", encoding="utf-8")


async def _start(spec: AppSpec, p: Plan, template: Template, stop: asyncio.Event) -> Running:
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    files: list[TextIO] = []
    daprd_file = _log_file(spec, "daprd", stamp) if spec.daprd_log != "console" else None
    app_file = _log_file(spec, "app", stamp) if spec.app_log != "console" and p.app_argv else None
    files += [f for f in (daprd_file, app_file) if f is not None]
    console.info(
        f"Starting Dapr with id {p.app_id}. HTTP Port: {p.http_port}. gRPC Port: {p.grpc_port}"
    )
    daprd = await Child.start(
        "daprd",
        p.daprd_argv,
        p.daprd_env,
        "",
        console=spec.daprd_log != "file",
        log_file=daprd_file,
    )
    running = Running(spec, p, daprd, None, files)
    if not await wait_ready(p, daprd, stop):
        return running
    if p.app_port <= 0:
        await check_sidecar(p)
    if p.app_argv:
        running.app = await start_app(
            p, f"== APP - {p.app_id} == ", console_out=spec.app_log != "file", log_file=app_file
        )
    else:
        console.warning(
            f"No application command found for app {p.app_id!r} present in {template.path}"
        )
    extra = {"runTemplatePath": str(template.path.absolute()), "runTemplateName": template.name}
    if app_file is not None:
        extra["appLogPath"] = app_file.name
    if daprd_file is not None:
        extra["daprdLogPath"] = daprd_file.name
    await store_run_metadata(p, running.app, extra)
    console.success("You're up and running! Dapr logs will appear here.\n")
    console.info(
        f"Started Dapr with app id {p.app_id!r}. HTTP Port: {p.http_port}. gRPC Port: {p.grpc_port}"
    )
    console.info(f"Writing log files to directory : {spec.app_dir / '.dapr' / 'logs'}")
    return running


async def _stop(r: Running) -> None:
    console.info(f"\ntermination signal received: shutting down ({r.plan.app_id})")
    if r.app is not None:
        await r.app.stop()
        console.success(f"Exited App successfully ({r.plan.app_id})")
    await r.daprd.stop(grace_s=DAPRD_STOP_GRACE_S)
    console.success(f"Exited Dapr successfully ({r.plan.app_id})")
    for f in r.files:
        with contextlib.suppress(OSError):
            f.close()


async def _all_exited(runs: list[Running]) -> None:
    waits = [r.daprd.proc.wait() for r in runs]
    waits += [r.app.proc.wait() for r in runs if r.app is not None]
    await asyncio.gather(*waits)


async def supervise_all(home: DaprHome, template: Template) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runs: list[Running] = []
    failed = False
    taken = in_use(home, "")
    app_ports = {a.args.int_("app-port") for a in template.apps} - {-1, 0}
    taken = InUse(taken.app_ids, taken.ports | app_ports)  # apps bind theirs later
    try:
        for spec in template.apps:
            console.info(f"Validating config and starting app {spec.app_id!r}")
            try:
                p = plan(home, spec.args, in_use=taken, extra_env=spec.env, cwd=spec.app_dir)
                if p.ignored:
                    console.warning(f"{p.app_id}: {ignored_warning(p.ignored)}")
                taken = InUse(
                    taken.app_ids | {p.app_id},
                    taken.ports | {p.http_port, p.grpc_port, p.internal_port, p.metrics_port},
                )
                runs.append(await _start(spec, p, template, stop))
            except (CliError, OSError) as err:
                console.warning(f"Error starting Dapr and app ({spec.app_id!r}): {err}")
                failed = True
                break
            if stop.is_set():
                break
        if not failed and not stop.is_set():
            done = asyncio.create_task(_all_exited(runs))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({done, stopper}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            stopper.cancel()
        print()
        if stop.is_set():
            console.info(
                "Received signal to stop Dapr and app processes. Shutting down Dapr and app "
                "processes."
            )
        elif not failed:
            console.info("Every app and daprd of the run template exited")
    finally:
        for r in runs:
            await _stop(r)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 1 if failed else 0


def run_template(home: DaprHome, path: str) -> int:
    """``dapr run -f <path>``: exit code 0 after a clean stop, 1 if an app could not start."""
    template_path = run_file_path(path) if path != "-" else Path("-")
    template = load_template(template_path, home.config_file)
    if not template.apps:
        raise CliError("No apps to run")
    if template.unknown_keys:
        console.warning(
            "These run template keys are not known to pysentry and are ignored: "
            + ", ".join(template.unknown_keys)
        )
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a group of our own, as Dapr's CreateProcessGroupID
    return asyncio.run(supervise_all(home, template))
