"""What ``dapr run`` starts for one app, computed before anything starts.

Ports not given (or ``<= 0``) are free ports on 127.0.0.1, never Sentry's or Dapr's well-known
ones (:data:`pysentry.cli.procs.RESERVED_PORTS`) nor a running sidecar's; a given port that is
taken fails with Dapr's ``invalid configuration for HTTPPort. Port N is not available``. daprd
always gets ``--dapr-http-port``, ``--dapr-grpc-port``, ``--dapr-internal-grpc-port`` and
``--metrics-port``; the app gets Dapr's environment (``APP_ID``, ``APP_CHANNEL_ADDRESS``,
``APP_PORT``, ``DAPR_HTTP_PORT``, ``DAPR_GRPC_PORT``, ``DAPR_METRICS_PORT``, ``APP_PROTOCOL``).

Any other Dapr flag set to something other than Dapr's default is passed to daprd, unless
daprd does not implement it (``pysentry.sidecar.flags.UNSUPPORTED_FLAGS``): then it is left
out and listed in one warning, so it is reported once, by the CLI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pysentry.cli.appid import generate_app_id
from pysentry.cli.configfile import read_mtls
from pysentry.cli.console import CliError
from pysentry.cli.home import DEFAULT_SENTRY_ADDRESS, HOME_ENV, DaprHome
from pysentry.cli.procs import free_port, port_available
from pysentry.cli.runflags import BY_NAME, FLAGS, RunArgs, Value
from pysentry.credentials import CA_FILENAME
from pysentry.sidecar.flags import UNSUPPORTED_FLAGS

#: Flags every plan sets itself (ports, id, config, log level).
_CORE = frozenset(
    {"app-id", "app-port", "config", "dapr-http-port", "dapr-grpc-port",
     "dapr-internal-grpc-port", "metrics-port", "log-level"}
)  # fmt: skip
#: daprd's defaults for the flags it accepts without implementing (a default value is silent).
_DAPRD_SILENT = {flag[2:]: default for flag, default in UNSUPPORTED_FLAGS}
_PORTS = (
    ("dapr-http-port", "HTTPPort"),
    ("dapr-grpc-port", "GRPCPort"),
    ("metrics-port", "MetricsPort"),
    ("dapr-internal-grpc-port", "InternalGRPCPort"),
)


@dataclass(frozen=True, slots=True)
class InUse:
    """What running sidecars already hold (Dapr's ``DaprMeta``)."""

    app_ids: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Plan:
    app_id: str
    daprd_argv: tuple[str, ...]
    daprd_env: dict[str, str]
    app_argv: tuple[str, ...]
    app_env: dict[str, str]
    http_port: int
    grpc_port: int
    internal_port: int
    metrics_port: int
    app_port: int
    mtls: bool
    cwd: Path | None = None
    ignored: tuple[str, ...] = field(default=())  # flags daprd does not implement, as given


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _daprd_ignores(name: str, value: Value) -> bool:
    if name not in _DAPRD_SILENT or name == "dapr-grpc-port":
        return False  # the gRPC port is always passed: daprd serves the Dapr gRPC API there
    silent = _DAPRD_SILENT[name]
    text = _text(value)
    return bool(text) and (silent is None or text.strip().lower() != silent.lower())


def _extra_daprd_args(args: RunArgs) -> tuple[list[str], list[str]]:
    """(daprd arguments, ignored flags) for every non-core Dapr flag off Dapr's default."""
    argv: list[str] = []
    ignored: list[str] = []
    for f in FLAGS:
        if not f.daprd or f.name in _CORE:
            continue
        value = args.values[f.name]
        if value == f.default or (
            f.kind == "int"
            and isinstance(value, int)
            and value <= 0
            and isinstance(f.default, int)
            and f.default <= 0
        ):
            continue
        if _daprd_ignores(f.name, value):
            ignored.append(f"--{f.name}" if value is True else f"--{f.name} {_text(value)}")
        elif f.kind == "bool":
            argv.append(f"--{f.name}={_text(value)}")
        elif isinstance(value, list):
            for item in value:
                argv += [f"--{f.name}", item]
        else:
            argv += [f"--{f.name}", _text(value)]
    return argv, ignored


def _ports(args: RunArgs, in_use: InUse) -> dict[str, int]:
    picked: dict[str, int] = {}
    app_port = {args.int_("app-port")} - {-1, 0}  # the app binds it later: never pick it
    for name, label in _PORTS:
        port = args.int_(name)
        if port > 0:
            taken = in_use.ports | app_port | set(picked.values())
            if port in taken or not port_available(port):
                raise CliError(
                    f"invalid configuration for {label}. Port {port} is not available: choose "
                    f"another --{name}, or leave it out to get a free port"
                )
        else:
            port = free_port(avoid=set(in_use.ports) | app_port | set(picked.values()))
        picked[name] = port
    return picked


def app_protocol(args: RunArgs) -> str:
    """Dapr's ``getAppProtocol``: the protocol the app is told in ``APP_PROTOCOL``."""
    proto = args.str_("app-protocol").lower()
    ssl = args.bool_("app-ssl")
    if proto in ("grpcs", "https", "h2c"):
        return proto
    if proto in ("http", ""):
        return "https" if ssl else "http"
    if proto == "grpc":
        return "grpcs" if ssl else "grpc"
    return ""


def plan(
    home: DaprHome,
    args: RunArgs,
    *,
    in_use: InUse = InUse(),
    extra_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Plan:
    """The plan for one app (``args`` from the command line or a run template entry)."""
    given_config = args.str_("config")
    config_path = (Path(given_config) if given_config else home.config_file).expanduser()
    config_path = config_path.absolute()
    settings = read_mtls(config_path, required=bool(given_config))
    app_id = args.str_("app-id") or generate_app_id(in_use.app_ids)
    ports = _ports(args, in_use)
    level = args.str_("log-level")
    argv = [sys.executable, "-m", "pysentry.sidecar.main", "--app-id", app_id]
    for name, port in ports.items():
        argv += [f"--{name}", str(port)]
    argv += ["--log-level", "fatal" if level == "panic" else level]
    app_port = max(args.int_("app-port"), 0)
    if app_port:
        argv += ["--app-port", str(app_port)]
    if config_path.exists():
        argv += ["--config", str(config_path)]
    extra, ignored = _extra_daprd_args(args)
    argv += extra
    if args.bool_("log-as-json"):
        argv.append("--log-as-json")
    env = dict(os.environ)
    env[HOME_ENV] = str(home.root)  # so `dapr list` of this installation finds this daprd
    sentry_address = args.str_("sentry-address")
    if settings.enabled:
        argv += ["--enable-mtls", "--sentry-address", sentry_address or DEFAULT_SENTRY_ADDRESS]
        if not env.get("DAPR_TRUST_ANCHORS"):
            creds = args.str_("issuer-credentials")
            anchors = (Path(creds) if creds else home.certs_dir).expanduser().absolute()
            anchors = anchors / CA_FILENAME
            if not anchors.is_file():
                raise CliError(
                    f"mTLS is enabled in {str(config_path)!r} but the trust anchors file "
                    f"{str(anchors)!r} does not exist: start Sentry first, e.g. 'sentry "
                    f"--issuer-credentials {anchors.parent} --trust-domain cluster.local'"
                )
            argv += ["--trust-anchors-file", str(anchors)]
    elif sentry_address:
        argv += ["--sentry-address", sentry_address]
    app_env = dict(os.environ)
    app_env.update(
        APP_ID=app_id,
        APP_CHANNEL_ADDRESS=args.str_("app-channel-address"),
        DAPR_HTTP_PORT=str(ports["dapr-http-port"]),
        DAPR_GRPC_PORT=str(ports["dapr-grpc-port"]),
        DAPR_METRICS_PORT=str(ports["metrics-port"]),
    )
    if app_port:
        app_env["APP_PORT"] = str(app_port)
    if proto := app_protocol(args):
        app_env["APP_PROTOCOL"] = proto
    app_env.update(extra_env or {})
    return Plan(
        app_id=app_id,
        daprd_argv=tuple(argv),
        daprd_env=env,
        app_argv=tuple(args.command),
        app_env=app_env,
        http_port=ports["dapr-http-port"],
        grpc_port=ports["dapr-grpc-port"],
        internal_port=ports["dapr-internal-grpc-port"],
        metrics_port=ports["metrics-port"],
        app_port=app_port,
        mtls=settings.enabled,
        cwd=cwd,
        ignored=tuple(ignored),
    )


def ignored_warning(ignored: tuple[str, ...]) -> str:
    why = "pysentry's daprd provides service invocation and mTLS only"
    flags = ", ".join(ignored)
    return f"These flags are not implemented by pysentry and are ignored: {flags} ({why})"


assert set(_CORE) <= set(BY_NAME)
