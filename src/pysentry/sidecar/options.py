"""``daprd`` flags and environment variables, spelled as Dapr spells them (spec §9.1, §9.2).

``--trust-anchors-file`` is a pysentry addition (Dapr's daprd only reads ``DAPR_TRUST_ANCHORS``):
the file is watched and hot-reloaded, which is what makes a zero-downtime root swap possible.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pysentry.config.duration import parse_duration
from pysentry.errors import ConfigError, InvalidDuration

DEFAULT_HTTP_PORT = 3500
DEFAULT_METRICS_PORT = 9090
DEFAULT_GRPC_PORT = 50001
APP_PROTOCOLS = ("http", "grpc")
DEFAULT_MAX_BODY_SIZE = 4 << 20  # Dapr's runtime.DefaultMaxRequestBodySize
STABLE_PORT_BASE = 47300

_GO_FLAG = re.compile(r"^-[a-z][a-z0-9-]+(=.*)?$")
_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {value!r}")


def _fastpath(flag: bool | None, env: Mapping[str, str]) -> bool:
    if flag is not None:
        return flag
    value = env.get("PYSENTRY_FASTPATH", "")
    if not value:
        return True
    try:
        return parse_bool(value)
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"PYSENTRY_FASTPATH: {err} (use true or false)") from err


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid port: {value!r}") from err
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port: {value!r}: must be 0-65535")
    return port


@dataclass(frozen=True, slots=True)
class Options:
    """daprd's flags and environment, parsed (a docstring: dataclass does not build one from
    the signature, a third of a millisecond at start-up)."""

    app_id: str
    app_port: int | None
    app_protocol: str
    app_channel_address: str
    dapr_http_port: int
    dapr_listen_address: str
    dapr_internal_grpc_port: int | None
    dapr_internal_grpc_listen_address: str
    metrics_port: int
    metrics_port_given: bool
    enable_metrics: bool
    enable_mtls: bool
    sentry_address: str
    config: Path | None
    control_plane_trust_domain: str
    control_plane_trust_domain_given: bool
    control_plane_namespace: str
    mode: str
    log_level: str
    log_as_json: bool
    trust_anchors_file: Path | None
    internal_connection_max_age: timedelta | None
    max_body_size: int  # bytes; 0 = no limit (Dapr's --max-body-size)
    metrics_listen_address: str
    dapr_grpc_port: int | None  # None: the default, 50001, or a free port if that is taken
    print_version: bool
    # from the environment
    namespace: str
    trust_anchors_pem: bytes | None
    sentry_token_file: Path | None
    sentry_local_identity: str | None
    api_token: str | None = field(repr=False)  # secrets: never in a repr or a log line
    app_api_token: str | None = field(repr=False)
    deprecated_env: tuple[str, ...]
    ignored_flags: tuple[str, ...]
    deprecated_flags: tuple[tuple[str, str], ...] = ()  # (flag, replacement)
    # every --dapr-listen-addresses entry (the first is dapr_listen_address); () = just that one
    dapr_listen_addresses: tuple[str, ...] = ()
    # pysentry addition: pysentry-invoke/2 between pysentry sidecars (ALPN), gRPC with the rest
    fastpath: bool = True


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="daprd",
        description="pysentry daprd: the Dapr sidecar (service invocation over mutual TLS)",
    )
    a = p.add_argument
    a("--app-id", default="", help="A unique ID for Dapr. Used for service discovery and identity")
    a("--app-port", type=_port, default=None, help="The port the application is listening on")
    a("--app-protocol", default="http", help="Protocol for the app: http or grpc")
    a("--app-channel-address", default="127.0.0.1", help="The network address the app listens on")
    a("--dapr-http-port", type=_port, default=DEFAULT_HTTP_PORT, help="HTTP port for Dapr API")
    a(
        "--dapr-listen-addresses",
        default="127.0.0.1",
        help="Addresses for the Dapr API to listen on",
    )
    a(
        "--dapr-internal-grpc-port",
        default="",
        help="gRPC port for the Dapr Internal API (random free port when empty or 0)",
    )
    a(
        "--dapr-internal-grpc-listen-address",
        default="127.0.0.1",
        help="Address for the internal gRPC API",
    )
    a(
        "--metrics-port",
        type=_port,
        default=None,
        help=f"The port for the metrics server (default {DEFAULT_METRICS_PORT})",
    )
    a(
        "--enable-metrics",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        help="Enable prometheus metric",
    )
    a(
        "--enable-mtls",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="Enables automatic mTLS for daprd to daprd communication channels",
    )
    a("--sentry-address", default="", help="Address for the Sentry CA service")
    a("--config", "-c", default="", help="Path to config file, or name of a configuration object")
    a("--control-plane-trust-domain", default=None, help="Trust domain of the Dapr control plane")
    a("--control-plane-namespace", default=None, help="Namespace of the Dapr control plane")
    a(
        "--mode",
        default="standalone",
        choices=("standalone", "kubernetes"),
        help="Runtime mode for Dapr",
    )
    a(
        "--log-level",
        default="info",
        choices=("debug", "info", "warn", "warning", "error", "fatal"),
        help="Options are debug, info, warn, error, or fatal",
    )
    a(
        "--log-as-json",
        type=parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="print log as JSON",
    )
    a(
        "--trust-anchors-file",
        default="",
        help="pysentry addition: PEM trust anchors file, watched and hot-reloaded "
        "(instead of DAPR_TRUST_ANCHORS)",
    )
    a(
        "--internal-connection-max-age",
        default="",
        help="pysentry addition: recycle sidecar-to-sidecar connections older than this Go "
        "duration (e.g. 10m), so rotated certificates and anchors reach long-lived connections",
    )
    a(
        "--pysentry-fastpath",
        type=parse_bool,
        nargs="?",
        const=True,
        default=None,
        help="pysentry addition: offer the pysentry-invoke/2 protocol (ALPN) to other pysentry "
        "sidecars on the mTLS internal port; false: gRPC only, as Dapr (default: "
        "$PYSENTRY_FASTPATH, else true)",
    )
    a(
        "--max-body-size",
        default=None,
        help="Max size of request body for the Dapr HTTP and gRPC servers, as a resource "
        f"quantity (default {DEFAULT_MAX_BODY_SIZE >> 20}Mi)",
    )
    a(
        "--dapr-http-max-request-size",
        type=int,
        default=None,
        help=f"Deprecated: use '--max-body-size {DEFAULT_MAX_BODY_SIZE >> 20}Mi'. "
        "Max size of request body in MB",
    )
    a(
        "--dapr-grpc-port",
        default=None,
        help=f"gRPC port for the Dapr API to listen on (default {DEFAULT_GRPC_PORT})",
    )
    a("--metrics-listen-address", default="0.0.0.0", help="The address for the metrics server")
    a("--version", action="store_true", help="Prints the runtime version")
    a("--build-info", action="store_true", help="Prints the build info")
    # Every other flag of Dapr 1.16's daprd is accepted, so any command line that starts Go
    # daprd starts ours; a value that would change behaviour pysentry lacks gets one warning.
    for flag, _ in UNSUPPORTED_FLAGS:
        if flag in _BOOL_FLAGS:
            a(flag, nargs="?", const="true", default=None, help=argparse.SUPPRESS)
        else:
            a(flag, default=None, help=argparse.SUPPRESS)
    return p


def _flag_port(value: str | None, flag: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return _port(value)
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"{flag}: {err}") from err


def _max_body_size(quantity: str | None, legacy_mb: int | None) -> int:
    """``--max-body-size`` wins over the deprecated ``--dapr-http-max-request-size`` (MB), as in
    Dapr; a negative legacy value means the default."""
    if quantity is not None:
        from pysentry.config.quantity import parse_byte_quantity  # decimal: only when given

        return parse_byte_quantity(quantity, flag="max-body-size")
    if legacy_mb is not None:
        return legacy_mb << 20 if legacy_mb >= 0 else DEFAULT_MAX_BODY_SIZE
    return DEFAULT_MAX_BODY_SIZE


#: Dapr 1.16 daprd flags pysentry accepts but does not serve, with Dapr's default value
#: (``None``: any value is worth a warning). The real ``dapr run`` always passes some of these
#: (``--read-buffer-size 4Ki --profile-port -1``): their defaults stay silent.
UNSUPPORTED_FLAGS: tuple[tuple[str, str | None], ...] = (
    ("--dapr-public-port", ""),
    ("--dapr-public-listen-address", ""),
    ("--profile-port", "-1"),
    ("--enable-profiling", "false"),
    ("--components-path", None),
    ("--resources-path", None),
    ("--control-plane-address", ""),
    ("--sentry-request-jwt-audiences", None),
    ("--allowed-origins", "*"),
    ("--wait", "false"),
    ("--app-max-concurrency", "-1"),
    ("--app-ssl", "false"),
    ("--read-buffer-size", "4Ki"),
    ("--dapr-http-read-buffer-size", "4"),
    ("--unix-domain-socket", ""),
    ("--dapr-graceful-shutdown-seconds", "5"),
    ("--dapr-block-shutdown-duration", "0s"),
    ("--enable-api-logging", None),
    ("--disable-builtin-k8s-secret-store", None),
    ("--enable-app-health-check", "false"),
    ("--app-health-check-path", "/healthz"),
    ("--app-health-probe-interval", "5"),
    ("--app-health-probe-timeout", "500"),
    ("--app-health-threshold", "3"),
    ("--placement-host-address", ""),
    ("--scheduler-host-address", None),
    ("--scheduler-job-streams", "3"),
    ("--actors-service", ""),
    ("--reminders-service", ""),
)


_BOOL_FLAGS = frozenset(
    {
        "--enable-profiling",
        "--wait",
        "--app-ssl",
        "--enable-api-logging",
        "--disable-builtin-k8s-secret-store",
        "--enable-app-health-check",
    }
)


def _unsupported(ns: argparse.Namespace) -> tuple[str, ...]:
    out = []
    for flag, default in UNSUPPORTED_FLAGS:
        value = getattr(ns, flag[2:].replace("-", "_"))
        if not value or (default is not None and value.strip().lower() == default.lower()):
            continue
        out.append(f"{flag}={value}" if value else flag)
    return tuple(out)


def stable_random_port(app_id: str, *, cwd: str | None = None) -> int:
    """Dapr's ``pkg/ports`` stable port: ``47300 + (h[0] | h[1]<<8) % (65535-47300)``."""
    import hashlib  # here, not at import: daprd's first certificate does not wait for it

    try:
        uid = str(os.getuid())
    except AttributeError:  # pragma: no cover - non-POSIX
        import getpass

        uid = getpass.getuser()
    seed = "|".join((app_id, cwd if cwd is not None else os.getcwd(), uid, socket.gethostname()))
    h = hashlib.sha256(seed.encode()).digest()
    return STABLE_PORT_BASE + (h[0] | h[1] << 8) % (65535 - STABLE_PORT_BASE)


def _blanked_flag_values(args: list[str], rest: list[str]) -> tuple[list[str], list[str]]:
    """Drop what remains of a flag the real CLI blanked: ``""`` and the value right after it.

    ``dapr run`` (v1.16.5) replaces ``--scheduler-host-address`` by ``""`` for a runtime whose
    ``--version`` is older than 1.14 (ours is pysentry's), leaving ``"" localhost:50006``. An
    empty argument means nothing; a leftover that follows one is that flag's value. Returns
    (the leftovers that are still errors, the dropped values)."""
    after_empty = {b for a, b in itertools.pairwise(args) if a == "" and b != ""}
    kept: list[str] = []
    dropped: list[str] = []
    for r in rest:
        if r == "":
            continue
        (dropped if r in after_empty and not r.startswith("-") else kept).append(r)
    return kept, dropped


def listen_addresses(value: str) -> tuple[str, ...]:
    """``--dapr-listen-addresses``: a comma list, IPv6 in brackets (``[::1],127.0.0.1``)."""
    out = tuple(dict.fromkeys(a.strip().strip("[]").strip() for a in value.split(",")))
    return tuple(a for a in out if a) or ("127.0.0.1",)


def parse_options(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Options:
    """Parse flags and env. Raises :class:`ConfigError` for values that do not make sense."""
    env = os.environ if env is None else env
    args = list(sys.argv[1:] if argv is None else argv)
    # Dapr's binaries double a leading single dash (``-app-id`` == ``--app-id``).
    args = ["-" + a if _GO_FLAG.match(a) else a for a in args]
    parser = _parser()
    ns, rest = parser.parse_known_args(args)
    rest, blanked = _blanked_flag_values(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if ns.app_protocol not in APP_PROTOCOLS:
        raise ConfigError(
            f"--app-protocol: {ns.app_protocol!r} is not supported: use "
            + " or ".join(repr(p) for p in APP_PROTOCOLS)
            + " (https, grpcs and h2c are Dapr protocols pysentry does not speak)"
        )
    internal: int | None = None
    if ns.dapr_internal_grpc_port not in ("", "0"):
        try:
            internal = _port(ns.dapr_internal_grpc_port)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"--dapr-internal-grpc-port: {err}") from err
    elif ns.mode == "kubernetes":
        internal = 50002
    td_given = ns.control_plane_trust_domain is not None or bool(
        env.get("DAPR_CONTROLPLANE_TRUST_DOMAIN")
    )
    td = ns.control_plane_trust_domain or env.get("DAPR_CONTROLPLANE_TRUST_DOMAIN") or "localhost"
    cp_ns = ns.control_plane_namespace or env.get("DAPR_CONTROLPLANE_NAMESPACE") or "default"
    token_file: Path | None = None
    if "DAPR_SENTRY_TOKEN_FILE" in env:
        if not env["DAPR_SENTRY_TOKEN_FILE"]:
            raise ConfigError(
                "environmental variable DAPR_SENTRY_TOKEN_FILE is set with an empty value"
            )
        token_file = Path(env["DAPR_SENTRY_TOKEN_FILE"])
    anchors = env.get("DAPR_TRUST_ANCHORS") or None
    max_age: timedelta | None = None
    if ns.internal_connection_max_age:
        try:
            max_age = parse_duration(ns.internal_connection_max_age)
        except InvalidDuration as err:
            raise ConfigError(f"--internal-connection-max-age: {err}") from err
    listen = listen_addresses(ns.dapr_listen_addresses)
    ignored = _unsupported(ns) + tuple(
        f"{value!r} after an empty argument (the value of a flag the dapr CLI blanked)"
        for value in blanked
    )
    return Options(
        app_id=ns.app_id,
        app_port=ns.app_port or None,
        app_protocol=ns.app_protocol,
        app_channel_address=ns.app_channel_address,
        dapr_http_port=ns.dapr_http_port,
        dapr_listen_address=listen[0],
        dapr_listen_addresses=listen,
        dapr_internal_grpc_port=internal,
        dapr_internal_grpc_listen_address=ns.dapr_internal_grpc_listen_address,
        metrics_port=DEFAULT_METRICS_PORT if ns.metrics_port is None else ns.metrics_port,
        metrics_port_given=ns.metrics_port is not None,
        enable_metrics=ns.enable_metrics,
        enable_mtls=ns.enable_mtls,
        sentry_address=ns.sentry_address,
        config=Path(ns.config) if ns.config else None,
        control_plane_trust_domain=td,
        control_plane_trust_domain_given=td_given,
        control_plane_namespace=cp_ns,
        mode=ns.mode,
        log_level=ns.log_level,
        log_as_json=ns.log_as_json,
        trust_anchors_file=Path(ns.trust_anchors_file) if ns.trust_anchors_file else None,
        internal_connection_max_age=max_age or None,
        max_body_size=_max_body_size(ns.max_body_size, ns.dapr_http_max_request_size),
        fastpath=_fastpath(ns.pysentry_fastpath, env),
        metrics_listen_address=ns.metrics_listen_address,
        dapr_grpc_port=_flag_port(ns.dapr_grpc_port, "--dapr-grpc-port"),
        print_version=ns.version or ns.build_info,
        namespace=env.get("NAMESPACE") or "default",
        trust_anchors_pem=anchors.encode() if anchors else None,
        sentry_token_file=token_file,
        sentry_local_identity=env.get("SENTRY_LOCAL_IDENTITY") or None,
        api_token=env.get("DAPR_API_TOKEN") or None,
        app_api_token=env.get("APP_API_TOKEN") or None,
        deprecated_env=tuple(v for v in ("DAPR_CERT_CHAIN", "DAPR_CERT_KEY") if env.get(v)),
        ignored_flags=ignored,
        deprecated_flags=(
            (("--dapr-http-max-request-size", "--max-body-size"),)
            if ns.dapr_http_max_request_size is not None
            else ()
        ),
    )
