"""What Sentry was started with: its flags (spec §3) and the env vars it reads.

``parse_options(argv, env)`` returns a frozen :class:`SentryOptions`. The flags themselves (names,
help, defaults, pflag spellings) are :mod:`.flags`'s parser.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pysentry.credentials.base import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.pki.keys import KeyAlgorithm
from pysentry.pki.profiles import SENTRY_APP_ID
from pysentry.sentry.cpus import default_workers
from pysentry.sentry.flags import (
    CA_KEY_ALGORITHMS,
    DEFAULT_CONFIG,
    DEFAULT_CREDENTIALS_DIR,
    DEFAULT_HEALTHZ_PORT,
    DEFAULT_MAX_CONCURRENT_SIGNS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SIGN_WAIT,
    DEFAULT_METRICS_PORT,
    DEFAULT_PORT,
    DEFAULT_TRUST_DOMAIN,
    build_parser,
    normalize_argv,
)
from pysentry.spiffe import SpiffeId, TrustDomain

DEFAULT_NAMESPACE = "default"
DEFAULT_RELOAD_QUIET_PERIOD = timedelta(seconds=2)


RELOAD_QUIET_PERIOD_ENV = "PYSENTRY_RELOAD_QUIET_PERIOD"
"""Seconds (float). Undocumented in --help: lets tests shorten Dapr's 2 s reload batching wait."""


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


def _default_kubeconfig() -> str:
    home = Path.home() if "HOME" in os.environ else None
    return str(home / ".kube" / "config") if home else ""


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
        ca_key_algorithm=CA_KEY_ALGORITHMS[ns.ca_key_algorithm],
        max_concurrent_signs=ns.max_concurrent_signs,
        max_request_bytes=ns.max_request_bytes,
        max_sign_wait=ns.max_sign_wait,
        namespace=env.get("NAMESPACE") or DEFAULT_NAMESPACE,
        reload_quiet_period=quiet,
        workers=ns.workers if ns.workers is not None else default_workers(),
    )
