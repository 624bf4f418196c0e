"""``daprd`` flags and environment variables, spelled as Dapr spells them (spec §9.1, §9.2).

``parse_options(argv, env)`` returns a frozen :class:`Options`; the flags themselves (names, help,
defaults) are :mod:`.flags`'s parser. ``--trust-anchors-file`` is a pysentry addition (Dapr's
daprd only reads ``DAPR_TRUST_ANCHORS``): the file is watched and hot-reloaded, which is what
makes a zero-downtime root swap possible.
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
from pysentry.sidecar.flags import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_METRICS_PORT,
    build_parser,
    parse_bool,
    parse_port,
    unsupported,
)

APP_PROTOCOLS = ("http", "grpc")
STABLE_PORT_BASE = 47300

_GO_FLAG = re.compile(r"^-[a-z][a-z0-9-]+(=.*)?$")


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


def _flag_port(value: str | None, flag: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return parse_port(value)
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
    parser = build_parser()
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
            internal = parse_port(ns.dapr_internal_grpc_port)
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
    ignored = unsupported(ns) + tuple(
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
