"""``dapr version`` and ``dapr --version``: Dapr's output shape (``cmd/version.go``).

The runtime is the daprd that ships with this package, so both versions are pysentry's.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pysentry import __version__
from pysentry.cli.console import CliError

TEMPLATE = "CLI version: {cli} \nRuntime version: {runtime}\n"  # Dapr's, with its space


def versions() -> dict[str, str]:
    return {"Cli version": __version__, "Runtime version": __version__}


def print_version() -> None:
    v = versions()
    print(TEMPLATE.format(cli=v["Cli version"], runtime=v["Runtime version"]), end="")


def version_command(
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="The output format of the version command. Valid values are: json.",
        ),
    ] = "",
) -> None:
    """Print the Dapr runtime and CLI version."""
    if output not in ("", "json"):
        raise CliError("An invalid output format was specified.")
    if output == "json":
        print(json.dumps(versions(), separators=(",", ":")))
    else:
        print_version()
