"""``dapr invoke``: call a method of a running app through its sidecar (``cmd/invoke.go``).

``POST`` (or ``--verb``) ``http://127.0.0.1:<httpPort>/v1.0/invoke/<app-id>/method/<method>``
with ``Content-Type: application/json``; the body is printed, then Dapr's
``App invoked successfully``. A status outside 200-399 fails with
``error invoking app <id>: <status>``, exit 1, as in Dapr.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Annotated

import typer

from pysentry.cli import console
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.mtls import ConfigOption
from pysentry.cli.sidecars import discover

TIMEOUT_S = 60.0


def invoke(port: int, app_id: str, method: str, verb: str, body: bytes) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request(
            verb,
            f"/v1.0/invoke/{app_id}/method/{method.lstrip('/')}",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as err:
        raise CliError(f"error invoking app {app_id}: {err}") from err
    finally:
        conn.close()
    if resp.status < 200 or resp.status >= 400:
        raise CliError(f"error invoking app {app_id}: {resp.status} {resp.reason}")
    return data


def invoke_command(
    ctx: typer.Context,
    app_id: Annotated[
        str, typer.Option("--app-id", "-a", help="The application id to invoke")
    ] = "",
    method: Annotated[str, typer.Option("--method", "-m", help="The method to invoke")] = "",
    data: Annotated[
        str, typer.Option("--data", "-d", help="The JSON serialized data string (optional)")
    ] = "",
    verb: Annotated[str, typer.Option("--verb", "-v", help="The HTTP verb to use")] = "POST",
    data_file: Annotated[
        str,
        typer.Option(
            "--data-file", "-f", help="A file containing the JSON serialized data (optional)"
        ),
    ] = "",
    unix_domain_socket: Annotated[
        str,
        typer.Option("--unix-domain-socket", "-u", help="Not supported by pysentry: ignored"),
    ] = "",
    config: ConfigOption = None,
) -> None:
    """Invoke a method on a given Dapr application. Supported platforms: Self-hosted."""
    missing = [f'"{n}"' for n, v in (("app-id", app_id), ("method", method)) if not v]
    if missing:
        raise CliError(f"required flag(s) {', '.join(missing)} not set", exit_code=2)
    if data and data_file:
        raise CliError("Only one of --data and --data-file allowed in the same invoke command")
    body = data.encode()
    if data_file:
        try:
            body = Path(data_file).read_bytes()
        except OSError as err:
            raise CliError(
                f"Error reading payload from '{data_file}'. Error: {err.strerror}"
            ) from err
    if unix_domain_socket:
        console.warning("--unix-domain-socket is ignored: pysentry's daprd listens on TCP only")
    home: DaprHome = ctx.find_root().obj
    sidecars = discover((config or home.config_file).expanduser(), home.root)
    target = next((s for s in sidecars if s.app_id == app_id), None)
    if target is None:
        raise CliError(f"error invoking app {app_id}: app ID {app_id} not found")
    response = invoke(target.http_port, app_id, method, verb.upper(), body)
    if response:
        print(response.decode(errors="replace"))
    console.success("App invoked successfully")
