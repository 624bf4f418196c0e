"""Dapr's Go boolean flags (``--enable-mtls=false``) rewritten for typer, and helm's error text."""

from __future__ import annotations

import subprocess

import pytest

from pysentry.cli.console import CliError
from pysentry.cli.goflags import go_bool_args
from pysentry.cli.helmcli import helm_error


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["init", "-k", "--enable-mtls=false"], ["init", "-k", "--no-enable-mtls"]),
        (["init", "--enable-mtls=True", "--wait=1"], ["init", "--enable-mtls", "--wait"]),
        (["init", "--wait=f", "--enable-ha=FALSE"], ["init"]),
        (["--debug", "uninstall", "--all=t"], ["--debug", "uninstall", "--all"]),
        (
            ["init", "--set", "a=false", "--", "--wait=false"],
            ["init", "--set", "a=false", "--", "--wait=false"],
        ),
        (["mtls", "--enable-mtls=false"], ["mtls", "--enable-mtls=false"]),  # not init/uninstall
    ],
)
def test_go_bool_args(args: list[str], expected: list[str]) -> None:
    index = 1 if args[0] == "--debug" else 0
    assert go_bool_args(args, index) == expected


def test_go_bool_args_refuses_what_parsebool_refuses() -> None:
    with pytest.raises(CliError) as err:
        go_bool_args(["init", "--enable-mtls=yes"], 0)
    assert str(err.value) == (
        'invalid argument "yes" for "--enable-mtls" flag: strconv.ParseBool: parsing "yes": '
        "invalid syntax"
    )


def test_helm_error_is_the_bare_error() -> None:
    done = subprocess.CompletedProcess(
        ["helm"],
        1,
        "",
        "WARNING: Kubernetes configuration file is group-readable.\n"
        "Error: INSTALLATION FAILED: cannot re-use a name that is still in use\n",
    )
    assert helm_error(done) == "cannot re-use a name that is still in use"
