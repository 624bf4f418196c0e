"""``daprd``'s command line: Dapr's flag names, help texts and defaults (spec §9.1), as an argparse
parser.

Every other flag of Dapr 1.16's daprd is accepted too (:data:`UNSUPPORTED_FLAGS`, hidden from
``--help``), so any command line that starts Go daprd starts ours. Bool flags take the pflag
forms ``--x``, ``--x=true`` and ``--x=false``; :func:`pysentry.sidecar.options.parse_options`
turns the parsed flags into ``Options``.
"""

from __future__ import annotations

import argparse

DEFAULT_HTTP_PORT = 3500
DEFAULT_METRICS_PORT = 9090
DEFAULT_GRPC_PORT = 50001
DEFAULT_MAX_BODY_SIZE = 4 << 20  # Dapr's runtime.DefaultMaxRequestBodySize

_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {value!r}")


def parse_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid port: {value!r}") from err
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port: {value!r}: must be 0-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="daprd",
        description="pysentry daprd: the Dapr sidecar (service invocation over mutual TLS)",
    )
    a = p.add_argument
    a("--app-id", default="", help="A unique ID for Dapr. Used for service discovery and identity")
    a("--app-port", type=parse_port, default=None, help="The port the application is listening on")
    a("--app-protocol", default="http", help="Protocol for the app: http or grpc")
    a("--app-channel-address", default="127.0.0.1", help="The network address the app listens on")
    a("--dapr-http-port", type=parse_port, default=DEFAULT_HTTP_PORT, help="HTTP port for Dapr API")
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
        type=parse_port,
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


def unsupported(ns: argparse.Namespace) -> tuple[str, ...]:
    out = []
    for flag, default in UNSUPPORTED_FLAGS:
        value = getattr(ns, flag[2:].replace("-", "_"))
        if not value or (default is not None and value.strip().lower() == default.lower()):
            continue
        out.append(f"{flag}={value}" if value else flag)
    return tuple(out)
