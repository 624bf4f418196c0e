"""Sentry's command line: Dapr's flag names, help and defaults (spec §3), as an argparse parser.

Go-style single-dash long flags (``-port 50001``) are accepted by doubling the dash
(:func:`normalize_argv`), as pflag does. Bool flags take the pflag forms ``--enable-metrics``,
``--enable-metrics=true`` and ``--enable-metrics=false``. A bad value is argparse's usage error;
:func:`pysentry.sentry.options.parse_options` turns the parsed flags into ``SentryOptions``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import timedelta

from pysentry.config.duration import parse_duration
from pysentry.credentials.base import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.errors import InvalidDuration
from pysentry.pki.keys import KeyAlgorithm

DEFAULT_CONFIG = "daprsystem"
DEFAULT_CREDENTIALS_DIR = "/var/run/secrets/dapr.io/credentials"
DEFAULT_PORT = 50001
DEFAULT_HEALTHZ_PORT = 8080
DEFAULT_METRICS_PORT = 9090
DEFAULT_TRUST_DOMAIN = "localhost"
DEFAULT_MAX_CONCURRENT_SIGNS = 64
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
DEFAULT_MAX_SIGN_WAIT = timedelta(seconds=1)

CA_KEY_ALGORITHMS = {"ecdsa-p256": KeyAlgorithm.EC_P256, "ed25519": KeyAlgorithm.ED25519}
_LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def _parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}: use true or false")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: not a number") from err
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: must be 0-65535")
    return port


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: not a number") from err
    if number < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: must be at least 1")
    return number


def _wait(value: str) -> timedelta:
    try:
        wait = parse_duration(value)
    except InvalidDuration as err:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: {err}") from err
    if wait <= timedelta(0):
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: must be more than 0")
    return wait


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sentry",
        description="Dapr Sentry: the certificate authority for Dapr mTLS (pysentry).",
    )
    add = p.add_argument
    add(
        "--config",
        default=None,
        help=f"Path to the Configuration file (default {DEFAULT_CONFIG!r})",
    )
    add(
        "--issuer-credentials",
        default=DEFAULT_CREDENTIALS_DIR,
        help="Path to the directory holding the issuer credentials",
    )
    add(
        "--issuer-ca-filename",
        default=CA_FILENAME,
        help="Certificate Authority certificate filename",
    )
    add(
        "--issuer-certificate-filename",
        default=ISSUER_CERT_FILENAME,
        help="Issuer certificate filename",
    )
    add("--issuer-key-filename", default=ISSUER_KEY_FILENAME, help="Issuer private key filename")
    add(
        "--trust-domain",
        default=DEFAULT_TRUST_DOMAIN,
        help="The CA trust domain (overrides spec.mtls.controlPlaneTrustDomain)",
    )
    add(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="The port for the sentry server to listen on",
    )
    add("--listen-address", default="", help="The listen address for the sentry server")
    add(
        "--healthz-port",
        type=_port,
        default=DEFAULT_HEALTHZ_PORT,
        help="The port for the healthz server to listen on",
    )
    add("--healthz-listen-address", default="", help="The listening address for the healthz server")
    add(
        "--enable-metrics",
        type=_parse_bool,
        nargs="?",
        const=True,
        default=True,
        help="Enable Prometheus metrics (default true)",
    )
    add(
        "--metrics-port",
        type=_port,
        default=DEFAULT_METRICS_PORT,
        help="The port for the metrics server",
    )
    add(
        "--metrics-listen-address",
        default="0.0.0.0",
        help="Accepted for compatibility; as in Dapr, metrics bind all interfaces",
    )
    add(
        "--log-level",
        default="info",
        choices=_LOG_LEVELS,
        help="Options are debug, info, warn, error, or fatal (default info)",
    )
    add(
        "--log-as-json",
        type=_parse_bool,
        nargs="?",
        const=True,
        default=False,
        help="print log as JSON (default false)",
    )
    add(
        "--mode",
        default=None,
        help="Runtime mode for Dapr Sentry: standalone or kubernetes "
        "(default: kubernetes when KUBERNETES_SERVICE_HOST is set, else standalone)",
    )
    add(
        "--kubeconfig",
        default=None,
        help="Kubernetes mode only: kubeconfig path (default: "
        "KUBECONFIG, else the in-cluster service account, else ~/.kube/config)",
    )
    add(
        "--ca-key-algorithm",
        default="ecdsa-p256",
        choices=tuple(CA_KEY_ALGORITHMS),
        help="pysentry: key type of a self-generated root and issuer (default ecdsa-p256)",
    )
    add(
        "--max-concurrent-signs",
        type=_positive_int,
        default=DEFAULT_MAX_CONCURRENT_SIGNS,
        help="pysentry: requests validated and signed at once; more wait in a queue "
        f"(default {DEFAULT_MAX_CONCURRENT_SIGNS})",
    )
    add(
        "--max-sign-wait",
        type=_wait,
        default=DEFAULT_MAX_SIGN_WAIT,
        help="pysentry: longest a request waits to start signing (and never past its own "
        "deadline); it gets RESOURCE_EXHAUSTED instead, at once when the wait is foreseen "
        "(default 1s)",
    )
    add(
        "--max-request-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="pysentry: largest SignCertificate request accepted, in bytes; larger ones get "
        f"RESOURCE_EXHAUSTED (default {DEFAULT_MAX_REQUEST_BYTES})",
    )
    add(
        "--workers",
        type=_positive_int,
        default=None,
        help="pysentry: processes that sign, sharing the gRPC port; 1 signs in this process "
        "(default: the CPUs this process may use, capped by its cgroup's CPU limit and at 4)",
    )
    return p


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Double a single leading dash on long flags (``-port`` -> ``--port``), as pflag does."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and arg[1].isalpha():
            arg = "-" + arg
        out.append(arg)
    return out
