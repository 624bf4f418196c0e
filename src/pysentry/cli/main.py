"""``dapr``: the operator's CLI (typer). ``main()`` is the console-script entry point.

Every failure prints ``error: <message>`` on stderr and exits non-zero (2 for a configuration
error), unlike Dapr's CLI which often exits 0; an exception no command translated is reported the
same way, as ``error: unexpected <type>: <message>``. ``--debug`` (anywhere before ``--``) shows the
traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from pysentry.cli import check, droproots, init, mtls, renew, run, status
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.errors import ConfigError, PysentryError

app = typer.Typer(
    name="dapr",
    help="Dapr CLI (pysentry, self-hosted): run apps with mTLS, inspect and renew certificates.",
    no_args_is_help=True,
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
) -> None:
    ctx.obj = DaprHome.resolve(home)


app.command("init")(init.init_command)
app.command(
    "run",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
    },
)(run.run_command)
app.command("list")(status.list_command)
app.command("status")(status.status_command)
app.add_typer(mtls.mtls_app, name="mtls")
mtls.mtls_app.command("renew-certificate")(renew.renew_command)
mtls.mtls_app.command("renew-cert", hidden=True)(renew.renew_command)
mtls.mtls_app.command("rnc", hidden=True)(renew.renew_command)
mtls.mtls_app.command("drop-old-roots")(droproots.drop_old_roots_command)
mtls.mtls_app.command("check")(check.check_command)


def _app_command_start(argv: list[str]) -> int:
    """Index where ``dapr run``'s app command starts (every ``run`` option takes a value)."""
    if "--" in argv:
        return argv.index("--")
    if "run" not in argv:
        return len(argv)
    i = argv.index("run") + 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 1 if (argv[i] == "--debug" or "=" in argv[i]) else 2
    return min(i, len(argv))


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` anywhere before the app command of ``dapr run`` (or ``--``)."""
    end = _app_command_start(argv)
    head = [arg for arg in argv[:end] if arg != "--debug"]
    return head + argv[end:], len(head) != end


def main(argv: list[str] | None = None) -> None:
    args, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    if debug:
        args = ["--debug", *args]
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    try:
        app(args=args, prog_name="dapr")  # standalone: usage errors print and exit 2
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
