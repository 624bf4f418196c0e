"""``dapr stop``: stop apps by app-id, or every app of a run template (``cmd/stop.go``).

As in Dapr: the ``dapr run`` process of an app is signalled (it stops the app and daprd), or
daprd itself when the CLI that started it runs other apps too or is unknown. ``-f`` sends
SIGINT to the ``dapr run -f`` process group found through ``runTemplatePath`` in the sidecars'
metadata. Unlike Dapr (exit 0), a failure exits 1.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from pysentry.cli import console
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.mtls import ConfigOption, KubernetesOption, refuse_kubernetes
from pysentry.cli.runfile import run_file_path
from pysentry.cli.sidecars import Sidecar, discover


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError as err:
        raise CliError(f"process {pid} is gone") from err
    except PermissionError as err:
        raise CliError(f"not allowed to signal process {pid}: {err.strerror}") from err


def stop_app(app_id: str, sidecars: list[Sidecar], per_cli: Counter[int]) -> None:
    for s in sidecars:
        if s.app_id != app_id:
            continue
        if s.cli_pid == 0 or per_cli[s.cli_pid] > 1:
            per_cli[s.cli_pid] -= 1
            _kill(s.daprd_pid, signal.SIGTERM)
        else:
            _kill(s.cli_pid, signal.SIGTERM)
        return
    raise CliError(f"couldn't find app id {app_id}")


def stop_run_file(template: Path, sidecars: list[Sidecar]) -> None:
    for s in sidecars:
        if s.extended.get("runTemplatePath") == str(template) and s.cli_pid:
            try:
                pgid = os.getpgid(s.cli_pid)
            except ProcessLookupError:
                pgid = 0
            if pgid == s.cli_pid:
                os.killpg(pgid, signal.SIGINT)
            else:  # not a group of its own: signal the CLI only, it stops the rest
                _kill(s.cli_pid, signal.SIGINT)
            return
    raise CliError(f"couldn't find apps with run file {str(template)!r}")


def stop_command(
    ctx: typer.Context,
    app_ids: Annotated[list[str] | None, typer.Argument(help="App ids to stop")] = None,
    app_id: Annotated[
        str, typer.Option("--app-id", "-a", help="The application id to be stopped")
    ] = "",
    run_file: Annotated[
        str,
        typer.Option(
            "--run-file", "-f", help="Path to the run template file for the list of apps to stop"
        ),
    ] = "",
    kubernetes: KubernetesOption = False,
    config: ConfigOption = None,
) -> None:
    """Stop Dapr instances and their associated apps. Supported platforms: Self-hosted."""
    refuse_kubernetes(kubernetes)
    home: DaprHome = ctx.find_root().obj
    sidecars = discover((config or home.config_file).expanduser(), home.root)
    if run_file:
        template = run_file_path(run_file).absolute()
        try:
            stop_run_file(template, sidecars)
        except CliError as err:
            raise CliError(f"Failed to stop Dapr and app processes: {err}") from err
        console.success("Dapr and app processes stopped successfully")
    ids = list(app_ids or []) + ([app_id] if app_id else [])
    if not ids and not run_file:
        raise CliError("nothing to stop: give --app-id <ID> or --run-file <dapr.yaml>", exit_code=2)
    per_cli = Counter(s.cli_pid for s in sidecars)
    failed = []
    for name in ids:
        try:
            stop_app(name, sidecars, per_cli)
        except CliError as err:
            failed.append(f"failed to stop app id {name}: {err}")
        else:
            console.success(f"app stopped successfully: {name}")
    if failed:
        raise CliError("; ".join(failed))
