"""daprd's start-up up to its first identity: the first log lines, the checks of the flags, the
listening sockets, and (with ``--enable-mtls`` and ``--sentry-address``) the first certificate,
requested before asyncio is imported (issue 13; docs/choices.md).

:func:`early_start` runs on the main thread before the event loop exists; Kubernetes mode and a
start-up whose mTLS or Sentry address comes from the Configuration do the same steps on the loop
(``runtime.run``), with :func:`announce` and :func:`bind_sockets` from here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, NoReturn

from pysentry import __version__
from pysentry.errors import ConfigError, SentryUnavailable
from pysentry.security.events import EarlySecurityMetrics
from pysentry.sidecar.ports import (
    StartupError,
    bind_api_grpc,
    bind_each,
    bind_internal,
    bind_metrics,
    listen_hosts,
)

if TYPE_CHECKING:
    from pysentry.config.configuration import Configuration
    from pysentry.security.anchors import TrustAnchors
    from pysentry.security.identity import X509Svid
    from pysentry.security.provider import SecurityProvider
    from pysentry.sidecar.options import Options

log = logging.getLogger("pysentry.sidecar")


def check_config_file(opts: Options) -> None:
    if opts.config is not None and opts.mode == "standalone" and not opts.config.exists():
        raise ConfigError(f"--config: configuration file not found: {str(opts.config)!r}")


def load_config(opts: Options) -> Configuration:
    from pysentry.config.configuration import Configuration, load_configuration

    if opts.config is None:
        return Configuration.model_validate({})
    check_config_file(opts)
    return load_configuration(opts.config)


def identity_first(opts: Options) -> bool:
    """With ``--enable-mtls`` and ``--sentry-address`` the first certificate needs nothing from
    the Configuration: it is requested before the Configuration is parsed (docs/choices.md)."""
    return opts.mode != "kubernetes" and opts.enable_mtls and bool(opts.sentry_address)


def announce(opts: Options) -> float:
    """The first log lines; the ``time.monotonic()`` that "Init Elapsed" counts from."""
    started = time.monotonic()
    log.info("Starting Dapr Runtime -- version %s -- commit pysentry", __version__)
    log.info("Log level set to: %s", opts.log_level)
    return started


class Sockets:
    """daprd's listening sockets, bound before anything serves."""

    def __init__(self, opts: Options) -> None:
        self.http = bind_each(listen_hosts(opts), opts.dapr_http_port, "--dapr-http-port")
        self.internal = bind_internal(opts)
        self.api_grpc = bind_api_grpc(opts)
        self.metrics = bind_metrics(opts) if opts.enable_metrics else None


def bind_sockets(opts: Options) -> Sockets:
    """The checks and warnings about the flags, then the sockets."""
    if not opts.app_id:
        raise ConfigError("--app-id: required")
    for name in opts.deprecated_env:
        log.warning(
            "%s is set but ignored: it is no longer used since Dapr v1.12; "
            "certificates come from Sentry",
            name,
        )
    for flag in opts.ignored_flags:
        log.warning("%s is accepted for compatibility but not supported by pysentry; ignored", flag)
    for flag, replacement in opts.deprecated_flags:
        log.warning("Flag %s has been deprecated, use %s instead", flag, replacement)
    log.info("The request body size parameter is: %d bytes", opts.max_body_size)
    return Sockets(opts)


def identity_failed(opts: Options, cfg: Configuration | None, err: SentryUnavailable) -> NoReturn:
    """Raise the fatal error for a first identity that could not be had: a broken ``--config``
    (not parsed yet when ``cfg`` is None) is the error to report, not Sentry's."""
    if cfg is None:
        load_config(opts)
    raise StartupError(str(err)) from err


class Early:
    """What :func:`early_start` did before the event loop: the sockets, the mTLS counters, and
    the first identity with its provider (renewals run on the loop)."""

    def __init__(
        self,
        started: float,
        sockets: Sockets,
        events: EarlySecurityMetrics,
        first: tuple[TrustAnchors, SecurityProvider, X509Svid],
    ) -> None:
        self.started = started
        self.sockets = sockets
        self.events = events
        self.anchors, self.provider, self.svid = first


def early_start(opts: Options) -> Early:
    """Up to the first identity, on this thread (``identity_first(opts)`` must hold)."""
    started = announce(opts)
    check_config_file(opts)
    sockets = bind_sockets(opts)
    events = EarlySecurityMetrics()
    from pysentry.sidecar.earlygc import sleep_collecting
    from pysentry.sidecar.first_identity import identity_provider

    anchors, provider, requests = identity_provider(
        opts, None, events, blocking_sleep=sleep_collecting
    )
    try:
        svid = provider.start_blocking(requests.request_blocking)
    except SentryUnavailable as err:
        identity_failed(opts, None, err)
    return Early(started, sockets, events, (anchors, provider, svid))
