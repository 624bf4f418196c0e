"""``dapr list`` and ``dapr status``: the running sidecars, found as Dapr's CLI finds them.

``dapr list -o json|yaml`` prints Dapr's ``ListOutput`` keys (``appId``, ``httpPort``,
``grpcPort``, ``appPort``, ``metricsEnabled``, ``command``, ``age``, ``created``, ``daprdPid``,
``cliPid``, ``appPid``, ``maxRequestBodySize``, ``httpReadBufferSize``, ``runTemplatePath``,
``appLogPath``, ``daprdLogPath``, ``runTemplateName``); pysentry's extras (namespace, SPIFFE ID,
certificate expiry, metrics port, internal address) are under ``pysentry``. ``status`` adds the
CA's expiry and warns when the root expires within 30 days.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from pysentry.cli import console
from pysentry.cli.age import age, created
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.mtls import (
    ClusterOption,
    ConfigOption,
    CredentialsOption,
    credentials_of,
    expiry_warning,
)
from pysentry.cli.nrread import read_registrations, settings_for
from pysentry.cli.pemfile import certificates
from pysentry.cli.sidecars import Sidecar, discover
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME, ISSUER_CERT_FILENAME, StoreState
from pysentry.nameresolution import Registration

OutputOption = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="The output format of the list. Valid values are: json, yaml, or table (default)",
    ),
]
AllNamespacesOption = Annotated[
    bool,
    typer.Option(
        "--all-namespaces", "-A", help="If true, list all Dapr pods in all namespaces (with -k)"
    ),
]
NamespaceOption = Annotated[
    str, typer.Option("--namespace", help="List define namespace pod in a Kubernetes cluster")
]
COMMAND_WIDTH = 20  # Dapr truncates the app command to 20 characters


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_sidecars(config: Path, dapr_root: Path) -> tuple[Registration, ...]:
    """Fresh registrations whose daprd process is still alive (``<dapr_root>/nr.db`` by default),
    read without writing to the database."""
    rows = read_registrations(settings_for(config, dapr_root))
    return tuple(r for r in rows if _alive(r.pid))


def truncate(text: str, width: int = COMMAND_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def row(s: Sidecar, now: datetime) -> dict[str, object]:
    """One sidecar as Dapr's ``ListOutput``, plus ``pysentry``."""
    reg = s.registration
    ext = s.extended
    return {
        "appId": s.app_id,
        "httpPort": s.http_port,
        "grpcPort": s.grpc_port,
        "appPort": s.app_port,
        "metricsEnabled": s.metrics_enabled,
        "command": truncate(ext.get("appCommand", "")),
        "age": age(s.created, now),
        "created": created(s.created),
        "daprdPid": s.daprd_pid,
        "cliPid": s.cli_pid,
        "appPid": s.app_pid,
        "maxRequestBodySize": s.max_request_body_size,
        "httpReadBufferSize": s.http_read_buffer_size,
        "runTemplatePath": ext.get("runTemplatePath", ""),
        "appLogPath": ext.get("appLogPath", ""),
        "daprdLogPath": ext.get("daprdLogPath", ""),
        "runTemplateName": ext.get("runTemplateName", ""),
        "pysentry": {
            "namespace": reg.namespace if reg else "",
            "spiffeId": reg.spiffe_id if reg else "",
            "certExpiry": reg.cert_expiry_at.isoformat() if reg and reg.cert_expiry_at else "",
            "metricsPort": reg.metrics_port if reg else 0,
            "internalAddress": reg.address if reg else "",
        },
    }


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    hours = console.hours_until(value, now)
    return f"{console.go_time(value)} ({hours}h)"


_COLUMNS = (
    ("APP ID", "appId"),
    ("HTTP PORT", "httpPort"),
    ("GRPC PORT", "grpcPort"),
    ("APP PORT", "appPort"),
    ("COMMAND", "command"),
    ("AGE", "age"),
    ("CREATED", "created"),
    ("DAPRD PID", "daprdPid"),
    ("CLI PID", "cliPid"),
    ("APP PID", "appPid"),
)


def _table(sidecars: list[Sidecar], rows: list[dict[str, object]], now: datetime) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title, _ in _COLUMNS:
        table.add_column(title, no_wrap=True)
    table.add_column("IDENTITY", no_wrap=True)
    table.add_column("CERT EXPIRES", no_wrap=True)
    for s, r in zip(sidecars, rows, strict=True):
        reg = s.registration
        identity = (reg.spiffe_id or "(mTLS off)") if reg else "-"
        table.add_row(
            *(str(r[key]) for _, key in _COLUMNS),
            identity,
            _when(reg.cert_expiry_at if reg else None, now),
        )
    return table


def check_output(output: str) -> None:
    if output not in ("", "table", "json", "yaml"):
        raise CliError("An invalid output format was specified.")


def show(home: DaprHome, config: Path | None, output: str, now: datetime) -> None:
    check_output(output)
    sidecars = discover((config or home.config_file).expanduser(), home.root)
    rows = [row(s, now) for s in sidecars]
    if output == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif output == "yaml":
        print(yaml.safe_dump(rows, sort_keys=False, allow_unicode=True), end="")
    elif not rows:
        print("No Dapr instances found.")
    else:
        console.table_console().print(_table(sidecars, rows, now))


def list_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    output: OutputOption = "",
    kubernetes: ClusterOption = False,
    all_namespaces: AllNamespacesOption = False,
    namespace: NamespaceOption = "",
) -> None:
    """List all Dapr instances (self-hosted, or with -k the Dapr Pods of the cluster)."""
    if kubernetes:
        check_output(output)
        from pysentry.cli import kubestatus

        kubestatus.run(kubestatus.list_pods("" if all_namespaces else namespace, output))
        return
    home: DaprHome = ctx.find_root().obj
    show(home, config, output, system_clock())


def status_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    issuer_credentials: CredentialsOption = None,
    output: OutputOption = "",
    kubernetes: ClusterOption = False,
) -> None:
    """Show the running sidecars and the expiry of the CA; warns 30 days before the root expires.

    With -k: the control plane in the cluster (Dapr's table), then the same warning."""
    if kubernetes:
        from pysentry.cli import kubestatus

        kubestatus.run(kubestatus.status())
        return
    home: DaprHome = ctx.find_root().obj
    now = system_clock()
    show(home, config, output, now)
    if output in ("json", "yaml"):
        return
    creds = credentials_of(ctx, issuer_credentials)
    if creds.state() is StoreState.NONE:
        console.info(f"No CA credentials in {creds.location}: mTLS is not set up (see 'dapr init')")
        return
    anchors = certificates(creds.read_anchors(), creds.label(CA_FILENAME))
    issuer = certificates(creds.read_file(ISSUER_CERT_FILENAME), creds.label(ISSUER_CERT_FILENAME))
    for index, root in enumerate(anchors):
        label = "Root certificate" if len(anchors) == 1 else f"Root certificate #{index + 1}"
        console.info(
            f"{label} expires in {console.hours_until(root.not_valid_after_utc, now)} "
            f"hours. Expiry date: {console.go_time(root.not_valid_after_utc)}"
        )
    if issuer:
        console.info(
            "Issuer certificate expires in "
            f"{console.hours_until(issuer[0].not_valid_after_utc, now)} "
            f"hours. Expiry date: {console.go_time(issuer[0].not_valid_after_utc)}"
        )
    text = expiry_warning(anchors, now)
    if text is not None:
        console.warning(text)
