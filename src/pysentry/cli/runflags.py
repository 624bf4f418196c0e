"""The flags of Dapr 1.16's ``dapr run`` (``cmd/run.go``), parsed the way cobra/pflag parses them.

Each :class:`Flag` says how Dapr spells it (long, shorthand, type, default, help), its key in a
multi-app run template (``dapr.yaml``) and whether ``dapr run`` hands it to daprd under the same
name. :func:`parse_run_args` stops at ``--`` or at the first positional argument: everything after
it is the app command, whatever it looks like, so ``dapr run --app-id a python app.py --port 5``
runs ``python app.py --port 5``. An unknown flag before the app command is an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pysentry.cli.console import CliError

Kind = Literal["int", "str", "bool", "list"]
Value = int | str | bool | list[str]


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    short: str
    kind: Kind
    default: Value
    help: str
    yaml: str = ""  # key in a run template ("" = not in the template)
    daprd: bool = False  # passed to daprd as --<name> when set
    hidden: bool = False


def _f(
    name: str, short: str, kind: Kind, default: Value, help_: str, yaml: str = "", **kw: bool
) -> Flag:
    return Flag(name, short, kind, default, help_, yaml, **kw)


#: Dapr 1.16's ``dapr run`` flags (plus the persistent ``--log-as-json`` and ``--runtime-path``),
#: in Dapr's order, then pysentry's own.
FLAGS: tuple[Flag, ...] = (
    _f("app-port", "p", "int", -1, "The port your application is listening on", "appPort",
       daprd=True),
    _f("app-id", "a", "str", "", "The id for your application, used for service discovery",
       "appID", daprd=True),
    _f("config", "c", "str", "", "Dapr configuration file (default: $HOME/.dapr/config.yaml)",
       "configFilePath", daprd=True),
    _f("dapr-http-port", "H", "int", -1, "The HTTP port for Dapr to listen on", "daprHTTPPort",
       daprd=True),
    _f("dapr-grpc-port", "G", "int", -1, "The gRPC port for Dapr to listen on", "daprGRPCPort",
       daprd=True),
    _f("dapr-internal-grpc-port", "I", "int", -1,
       "The gRPC port for the Dapr internal API to listen on", "daprInternalGRPCPort", daprd=True),
    _f("enable-profiling", "", "bool", False, "Enable pprof profiling via an HTTP endpoint",
       "enableProfiling", daprd=True),
    _f("profile-port", "", "int", -1, "The port for the profile server to listen on",
       "profilePort", daprd=True),
    _f("log-level", "", "str", "info",
       "The log verbosity. Valid values are: debug, info, warn, error, fatal, or panic",
       "logLevel", daprd=True),
    _f("app-max-concurrency", "", "int", -1,
       "The concurrency level of the application, otherwise is unlimited", "appMaxConcurrency",
       daprd=True),
    _f("app-protocol", "P", "str", "http",
       "The protocol (grpc, grpcs, http, https, h2c) Dapr uses to talk to the application",
       "appProtocol", daprd=True),
    _f("components-path", "d", "str", "", "Deprecated: use --resources-path", daprd=True,
       hidden=True),
    _f("resources-path", "", "list", [], "The path for resources directory", "resourcesPaths",
       daprd=True),
    _f("placement-host-address", "", "str", "localhost",
       "The address of the placement service", "placementHostAddress", daprd=True),
    _f("scheduler-host-address", "", "str", "localhost",
       "The address of the scheduler service", "schedulerHostAddress", daprd=True),
    _f("app-ssl", "", "bool", False, "Deprecated: use --app-protocol https or grpcs", "appSSL",
       daprd=True, hidden=True),
    _f("metrics-port", "M", "int", -1, "The port of metrics on dapr", "metricsPort", daprd=True),
    _f("help", "h", "bool", False, "Print this help message"),
    _f("max-body-size", "", "str", "4Mi", "Max size of request body in MB", "maxBodySize",
       daprd=True),
    _f("read-buffer-size", "", "str", "4Ki", "HTTP header read buffer in KB", "readBufferSize",
       daprd=True),
    _f("unix-domain-socket", "u", "str", "",
       "Path to a unix domain socket dir. If specified, Dapr API servers will use Unix Domain "
       "Sockets", "unixDomainSocket", daprd=True),
    _f("enable-app-health-check", "", "bool", False,
       "Enable health checks for the application using the protocol defined with app-protocol",
       "enableAppHealthCheck", daprd=True),
    _f("app-health-check-path", "", "str", "", "Path used for health checks; HTTP only",
       "appHealthCheckPath", daprd=True),
    _f("app-health-probe-interval", "", "int", 0,
       "Interval to probe for the health of the app in seconds", "appHealthProbeInterval",
       daprd=True),
    _f("app-health-probe-timeout", "", "int", 0,
       "Timeout for app health probes in milliseconds", "appHealthProbeTimeout", daprd=True),
    _f("app-health-threshold", "", "int", 0,
       "Number of consecutive failures for the app to be considered unhealthy",
       "appHealthThreshold", daprd=True),
    _f("enable-api-logging", "", "bool", False,
       "Log API calls at INFO verbosity. Valid values are: true or false", "enableApiLogging",
       daprd=True),
    _f("kubernetes", "k", "bool", False,
       "Run the multi-app run template against Kubernetes environment."),
    _f("dapr-listen-addresses", "", "str", "",
       "Comma separated list of IP addresses that sidecar will listen to", "apiListenAddresses",
       daprd=True),
    _f("run-file", "f", "str", "", "Path to the run template file for the list of apps to run"),
    _f("app-channel-address", "", "str", "127.0.0.1",
       "The network address the application listens on", "appChannelAddress", daprd=True),
    # persistent flags of Dapr's root command
    _f("log-as-json", "", "bool", False, "Log output in JSON format"),
    _f("runtime-path", "", "str", "", "The path to the dapr runtime installation directory",
       "runtimePath"),
    # pysentry's own
    _f("sentry-address", "", "str", "",
       "pysentry: address of Sentry when mTLS is enabled (default: localhost:50001)"),
    _f("issuer-credentials", "", "str", "",
       "pysentry: credentials directory whose ca.crt daprd trusts (default: $HOME/.dapr/certs)"),
    _f("debug", "", "bool", False, "pysentry: show tracebacks on errors"),
)  # fmt: skip

BY_NAME = {f.name: f for f in FLAGS}
BY_SHORT = {f.short: f for f in FLAGS if f.short}
#: Dapr's flags that still apply with --run-file (``runFileCompatibleFlags`` + run-file itself).
RUN_FILE_FLAGS = frozenset(
    {"kubernetes", "help", "version", "runtime-path", "log-as-json", "run-file", "debug"}
)


@dataclass(slots=True)
class RunArgs:
    """What the command line said: values by flag name, which were given, the app command."""

    values: dict[str, Value] = field(default_factory=lambda: dict(defaults()))
    given: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)

    def str_(self, name: str) -> str:
        value = self.values[name]
        assert isinstance(value, str)
        return value

    def int_(self, name: str) -> int:
        value = self.values[name]
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    def bool_(self, name: str) -> bool:
        return self.values[name] is True

    def list_(self, name: str) -> list[str]:
        value = self.values[name]
        assert isinstance(value, list)
        return value


def _copy(value: Value) -> Value:
    return list(value) if isinstance(value, list) else value


def defaults() -> dict[str, Value]:
    return {f.name: _copy(f.default) for f in FLAGS}


def _usage(message: str) -> CliError:
    return CliError(f"{message}; see 'dapr run --help'", exit_code=2)


def convert(flag: Flag, raw: str, where: str) -> Value:
    """``raw`` as the flag's type (``where`` names it in errors: ``--app-port`` or a yaml key)."""
    if flag.kind == "int":
        try:
            return int(raw.strip())
        except ValueError:
            raise _usage(f"invalid argument {raw!r} for {where}: not an integer") from None
    if flag.kind == "bool":
        text = raw.strip().lower()
        if text in ("1", "t", "true"):
            return True
        if text in ("0", "f", "false"):
            return False
        raise _usage(f"invalid argument {raw!r} for {where}: not a boolean (true or false)")
    if flag.kind == "list":
        return [part for part in raw.split(",") if part]
    return raw


def _set(args: RunArgs, flag: Flag, raw: str, where: str) -> None:
    value = convert(flag, raw, where)
    if flag.kind == "list" and flag.name in args.given:
        current = args.values[flag.name]
        assert isinstance(current, list) and isinstance(value, list)
        value = current + value
    args.values[flag.name] = value
    if flag.name not in args.given:
        args.given.append(flag.name)


def parse_run_args(argv: Sequence[str]) -> RunArgs:
    """pflag's rules: ``--name value``, ``--name=value``, ``-x value``, ``-xvalue``, ``-x=value``;
    a bool flag takes no separate value (``--flag=false`` to turn it off)."""
    args = RunArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args.command = list(argv[i + 1 :])
            return args
        if not arg.startswith("-") or arg == "-":
            args.command = list(argv[i:])
            return args
        if arg.startswith("--"):
            name, eq, inline = arg[2:].partition("=")
            flag = BY_NAME.get(name)
            where = f"--{name}"
            if flag is None:
                raise _usage(
                    f"unknown flag: --{name} (put the app command after '--', e.g. "
                    "'dapr run --app-id myapp -- python app.py')"
                )
        else:
            short, rest = arg[1], arg[2:]
            flag = BY_SHORT.get(short)
            where = f"-{short}"
            if flag is None:
                raise _usage(f"unknown shorthand flag: {short!r} in {arg}")
            eq, inline = ("=", rest[1:]) if rest.startswith("=") else ("=" if rest else "", rest)
        if flag.kind == "bool":
            _set(args, flag, inline if eq else "true", where)
        elif eq:
            _set(args, flag, inline, where)
        elif i + 1 < len(argv):
            i += 1
            _set(args, flag, argv[i], where)
        else:
            raise _usage(f"flag needs an argument: {where}")
        i += 1
    return args


def help_text() -> str:
    lines = [
        "Run Dapr and (optionally) your application side by side. Supported platforms: Self-hosted",
        "",
        "Usage:",
        "  dapr run [flags] [-- app command]",
        "",
        "Examples:",
        "  dapr run --app-id myapp --app-port 5000 -- python app.py",
        "  dapr run --app-id myapp            # sidecar only",
        "  dapr run -f dapr.yaml              # every app of a run template",
        "",
        "Flags:",
    ]
    for f in FLAGS:
        if f.hidden:
            continue
        short = f"-{f.short}, " if f.short else "    "
        value = {"int": " int", "str": " string", "list": " strings", "bool": ""}[f.kind]
        default = "" if f.default in ("", [], False) else f" (default {f.default!r})"
        lines.append(f"  {short}--{f.name}{value}".ljust(42) + f" {f.help}{default}")
    return "\n".join(lines)
