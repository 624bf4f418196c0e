"""``dapr``: the operator's CLI (typer). ``main()`` is the console-script entry point.

Every failure prints ``error: <message>`` on stderr and exits non-zero (2 for a configuration
error), unlike Dapr's CLI which often exits 0; an exception no command translated is reported the
same way, as ``error: unexpected <type>: <message>``. ``--debug`` (anywhere before ``--``) shows the
traceback.

``dapr run`` is parsed with Dapr's flag rules (:mod:`pysentry.cli.runflags`), not typer's, so its
app command is exactly what follows ``--`` or the first positional. Dapr's persistent flags
``--log-as-json`` and ``--runtime-path DIR`` (the installation in ``DIR/.dapr``) are accepted
anywhere before ``--``; ``--version``/``-v`` prints Dapr's version text.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from pysentry.cli import check, console, droproots, init, invoke, mtls, renew, run, status, stop
from pysentry.cli import uninstall as uninstall_cmd
from pysentry.cli import version as version_cmd
from pysentry.cli.console import CliError
from pysentry.cli.goflags import go_bool_args
from pysentry.cli.home import DAPR_DIR_NAME, DaprHome
from pysentry.cli.runflags import parse_run_args
from pysentry.errors import ConfigError, PysentryError

app = typer.Typer(
    name="dapr",
    help="Dapr CLI (pysentry, self-hosted): run apps with mTLS, inspect and renew certificates.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    home: Annotated[
        Path | None,
        typer.Option("--home", hidden=True, help="Dapr directory instead of $HOME/.dapr."),
    ] = None,
    show_version: Annotated[
        bool, typer.Option("--version", "-v", help="version for dapr", is_eager=True)
    ] = False,
) -> None:
    if show_version:
        version_cmd.print_version()
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)
    ctx.obj = DaprHome.resolve(home)


app.command("init")(init.init_command)
app.command("uninstall")(uninstall_cmd.uninstall_command)
app.command(
    "run",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": [],
    },
    help="Run Dapr and (optionally) your application side by side (see 'dapr run --help').",
)(run.run_command)
app.command("list")(status.list_command)
app.command("status")(status.status_command)
app.command("stop")(stop.stop_command)
app.command("invoke")(invoke.invoke_command)
app.command("version")(version_cmd.version_command)
app.add_typer(mtls.mtls_app, name="mtls")
mtls.mtls_app.command("renew-certificate")(renew.renew_command)
mtls.mtls_app.command("renew-cert", hidden=True)(renew.renew_command)
mtls.mtls_app.command("rnc", hidden=True)(renew.renew_command)
mtls.mtls_app.command("drop-old-roots")(droproots.drop_old_roots_command)
mtls.mtls_app.command("check")(check.check_command)


#: Root options (Dapr's persistent ``--log-as-json`` and ``--runtime-path`` included) and
#: whether they take a value.
_ROOT_OPTIONS = {"--debug": False, "--log-as-json": False, "--home": True, "--runtime-path": True}


def _subcommand_index(argv: list[str]) -> int:
    """Index of the subcommand, past the root options."""
    i = 0
    while i < len(argv):
        name, eq, _ = argv[i].partition("=")
        if name not in _ROOT_OPTIONS:
            return i
        i += 2 if _ROOT_OPTIONS[name] and not eq else 1
    return i


def _persistent(argv: list[str]) -> tuple[list[str], bool, bool, str | None]:
    """Take ``--debug``, ``--log-as-json``, ``--runtime-path X`` and ``--home X`` out of
    ``argv`` (anywhere before ``--``): (rest, debug, json, home directory)."""
    rest: list[str] = []
    debug = as_json = False
    home: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        name, eq, value = arg.partition("=")
        if name not in _ROOT_OPTIONS:
            rest.append(arg)
            i += 1
            continue
        if _ROOT_OPTIONS[name] and not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
            i += 1
        if name == "--debug":
            debug = True
        elif name == "--log-as-json":
            as_json = True
        elif name == "--home" or (name == "--runtime-path" and value and home is None):
            # Dapr's --runtime-path DIR means the installation in DIR/.dapr
            home = value if name == "--home" else str(Path(value) / DAPR_DIR_NAME)
        i += 1
    return rest, debug, as_json, home


def _dispatch(args: list[str]) -> None:
    """``dapr run`` is parsed by Dapr's flag rules (:mod:`pysentry.cli.runflags`), every other
    command by typer."""
    i = _subcommand_index(args)
    if i < len(args) and args[i] == "run":
        _, _, as_json, home = _persistent(args[:i])
        if as_json:
            console.enable_json()
        home_dir = DaprHome.resolve(Path(home) if home else None)
        sys.exit(run.run_main(home_dir, args[i + 1 :]))
    args = go_bool_args(args, i)  # Dapr's --enable-mtls=false etc. (init, uninstall)
    rest, debug, as_json, home = _persistent(args)
    if as_json:
        console.enable_json()
    rest = (["--debug"] if debug else []) + (["--home", home] if home else []) + rest
    app(args=rest, prog_name="dapr")  # standalone: usage errors print and exit 2


def _wants_debug(args: list[str]) -> bool:
    """``--debug`` before ``--`` (for ``dapr run``: before its app command)."""
    i = _subcommand_index(args)
    if i < len(args) and args[i] == "run":
        return "--debug" in args[:i] or parse_run_args(args[i + 1 :]).bool_("debug")
    return "--debug" in (args[: args.index("--")] if "--" in args else args)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        debug = _wants_debug(args)
    except CliError:
        debug = False  # the usage error is reported below
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    try:
        _dispatch(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except (PysentryError, OSError) as err:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {err}\n")
        code = 2 if isinstance(err, ConfigError) else 1
        sys.exit(err.exit_code if isinstance(err, CliError) else code)
    except Exception as err:  # the one boundary for errors no command translated
        if debug:
            traceback.print_exc()
        sys.stderr.write(
            f"error: unexpected {type(err).__name__}: {err}; run the command again with --debug "
            "to see the traceback\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
