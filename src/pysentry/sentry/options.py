"""Sentry's command-line flags, with Dapr's names and defaults (spec §3).

``parse_options(argv, env)`` returns a frozen :class:`SentryOptions`. Go-style single-dash long
flags (``-port 50001``) are accepted by doubling the dash, as pflag does. Bool flags take the pflag
forms ``--enable-metrics``, ``--enable-metrics=true`` and ``--enable-metrics=false``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pysentry.config.duration import parse_duration
from pysentry.credentials.base import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.errors import InvalidDuration
from pysentry.pki.keys import KeyAlgorithm
from pysentry.pki.profiles import SENTRY_APP_ID
from pysentry.sentry.cpus import default_workers
from pysentry.spiffe import SpiffeId, TrustDomain

DEFAULT_CONFIG = "daprsystem"
DEFAULT_CREDENTIALS_DIR = "/var/run/secrets/dapr.io/credentials"
DEFAULT_PORT = 50001
DEFAULT_HEALTHZ_PORT = 8080
DEFAULT_METRICS_PORT = 9090
DEFAULT_TRUST_DOMAIN = "localhost"
DEFAULT_NAMESPACE = "default"
DEFAULT_MAX_CONCURRENT_SIGNS = 64
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
DEFAULT_MAX_SIGN_WAIT = timedelta(seconds=1)
DEFAULT_RELOAD_QUIET_PERIOD = timedelta(seconds=2)


RELOAD_QUIET_PERIOD_ENV = "PYSENTRY_RELOAD_QUIET_PERIOD"
"""Seconds (float). Undocumented in --help: lets tests shorten Dapr's 2 s reload batching wait."""

_CA_KEY_ALGORITHMS = {"ecdsa-p256": KeyAlgorithm.EC_P256, "ed25519": KeyAlgorithm.ED25519}
_LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass(frozen=True, slots=True)
class SentryOptions:
    """Everything ``sentry`` was started with (flags plus the env vars it reads)."""

    config: str = DEFAULT_CONFIG
    config_explicit: bool = False
    issuer_credentials: Path = Path(DEFAULT_CREDENTIALS_DIR)
    issuer_ca_filename: str = CA_FILENAME
    issuer_certificate_filename: str = ISSUER_CERT_FILENAME
    issuer_key_filename: str = ISSUER_KEY_FILENAME
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    port: int = DEFAULT_PORT
    listen_address: str = ""
    healthz_port: int = DEFAULT_HEALTHZ_PORT
    healthz_listen_address: str = ""
    enable_metrics: bool = True
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_listen_address: str = "0.0.0.0"
    log_level: str = "info"
    log_as_json: bool = False
    mode: str = "standalone"
    kubeconfig: str = ""
    kubeconfig_explicit: bool = False
    ca_key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256
    max_concurrent_signs: int = DEFAULT_MAX_CONCURRENT_SIGNS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_sign_wait: timedelta = DEFAULT_MAX_SIGN_WAIT
    namespace: str = DEFAULT_NAMESPACE
    reload_quiet_period: timedelta = DEFAULT_RELOAD_QUIET_PERIOD
    workers: int = 1

    def _resolve(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.issuer_credentials / path

    @property
    def ca_path(self) -> Path:
        return self._resolve(self.issuer_ca_filename)

    @property
    def issuer_cert_path(self) -> Path:
        return self._resolve(self.issuer_certificate_filename)

    @property
    def issuer_key_path(self) -> Path:
        return self._resolve(self.issuer_key_filename)

    @property
    def sentry_id(self) -> str:
        """``spiffe://<trust-domain>/ns/<NAMESPACE>/dapr-sentry``."""
        trust_domain = TrustDomain.parse(self.trust_domain)  # also accepts spiffe://<td>
        return str(SpiffeId.for_app(trust_domain, self.namespace, SENTRY_APP_ID))


class OptionsError(ValueError):
    """A flag value that is wrong; the entry point prints it and exits 1."""


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


def _default_kubeconfig() -> str:
    home = Path.home() if "HOME" in os.environ else None
    return str(home / ".kube" / "config") if home else ""


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
        choices=tuple(_CA_KEY_ALGORITHMS),
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


def parse_options(argv: Sequence[str], env: Mapping[str, str] | None = None) -> SentryOptions:
    """Parse flags; argparse exits 2 on unknown flags; bad values raise :class:`OptionsError`."""
    env = os.environ if env is None else env
    ns = build_parser().parse_args(normalize_argv(argv))
    mode = ns.mode or ("kubernetes" if env.get("KUBERNETES_SERVICE_HOST") else "standalone")
    if mode not in ("standalone", "kubernetes"):
        raise OptionsError(f"invalid mode: {mode}")
    quiet = DEFAULT_RELOAD_QUIET_PERIOD
    raw_quiet = env.get(RELOAD_QUIET_PERIOD_ENV, "")
    if raw_quiet:
        try:
            quiet = timedelta(seconds=float(raw_quiet))
        except ValueError as err:
            raise OptionsError(
                f"{RELOAD_QUIET_PERIOD_ENV}={raw_quiet!r}: not a number of seconds"
            ) from err
    return SentryOptions(
        config=ns.config if ns.config is not None else DEFAULT_CONFIG,
        config_explicit=ns.config is not None,
        issuer_credentials=Path(ns.issuer_credentials).expanduser(),
        issuer_ca_filename=ns.issuer_ca_filename,
        issuer_certificate_filename=ns.issuer_certificate_filename,
        issuer_key_filename=ns.issuer_key_filename,
        trust_domain=ns.trust_domain,
        port=ns.port,
        listen_address=ns.listen_address,
        healthz_port=ns.healthz_port,
        healthz_listen_address=ns.healthz_listen_address,
        enable_metrics=ns.enable_metrics,
        metrics_port=ns.metrics_port,
        metrics_listen_address=ns.metrics_listen_address,
        log_level=ns.log_level,
        log_as_json=ns.log_as_json,
        mode=mode,
        kubeconfig=ns.kubeconfig if ns.kubeconfig is not None else _default_kubeconfig(),
        kubeconfig_explicit=ns.kubeconfig is not None,
        ca_key_algorithm=_CA_KEY_ALGORITHMS[ns.ca_key_algorithm],
        max_concurrent_signs=ns.max_concurrent_signs,
        max_request_bytes=ns.max_request_bytes,
        max_sign_wait=ns.max_sign_wait,
        namespace=env.get("NAMESPACE") or DEFAULT_NAMESPACE,
        reload_quiet_period=quiet,
        workers=ns.workers if ns.workers is not None else default_workers(),
    )
