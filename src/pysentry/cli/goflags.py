"""Dapr's Go boolean flags on typer commands: ``--enable-mtls=false`` and friends.

pflag accepts ``--flag``, ``--flag=true`` and ``--flag=false`` (any of ``strconv.ParseBool``'s
spellings); click's flags take no value. Before typer parses ``dapr init`` or ``dapr uninstall``,
:func:`go_bool_args` rewrites ``--flag=<bool>`` into ``--flag`` or ``--no-flag`` (for the flags
that have that form here) or nothing (a false flag whose default is false).
"""

from __future__ import annotations

import json

from pysentry.cli.console import CliError

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

#: Boolean flags per command: True when the command also has ``--no-<flag>``.
BOOL_FLAGS: dict[str, dict[str, bool]] = {
    "init": {
        "kubernetes": False,
        "slim": False,
        "dev": False,
        "wait": False,
        "enable-ha": False,
        "enable-mtls": True,
    },
    "uninstall": {"kubernetes": False, "dev": False, "all": False},
}


def parse_go_bool(name: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    quoted = json.dumps(value)
    raise CliError(
        f'invalid argument {quoted} for "--{name}" flag: strconv.ParseBool: parsing {quoted}: '
        "invalid syntax"
    )


def go_bool_args(args: list[str], command_index: int) -> list[str]:
    """``args`` with ``--flag=<bool>`` of the command at ``command_index`` rewritten."""
    if command_index >= len(args) or args[command_index] not in BOOL_FLAGS:
        return args
    flags = BOOL_FLAGS[args[command_index]]
    out = args[: command_index + 1]
    for i, arg in enumerate(args[command_index + 1 :], start=command_index + 1):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.removeprefix("--").partition("=")
        if not (arg.startswith("--") and eq and name in flags):
            out.append(arg)
        elif parse_go_bool(name, value):
            out.append(f"--{name}")
        elif flags[name]:
            out.append(f"--no-{name}")
    return out
