"""daprd's listening sockets, bound before anything else starts, so a taken port is reported by
its flag's name (and the defaults shared with Sentry move aside with a warning)."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Sequence

from pysentry.errors import PysentryError
from pysentry.sidecar.flags import DEFAULT_GRPC_PORT
from pysentry.sidecar.options import Options, stable_random_port

log = logging.getLogger("pysentry.sidecar")


class StartupError(PysentryError):
    """The sidecar cannot start (port taken, no anchors, no identity): exit code 1."""


def bind(host: str, port: int, flag: str) -> socket.socket:
    """Bind a listening TCP socket now, so a taken port is reported by flag name."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: grpclib only sets TCP_NODELAY on sockets whose proto says TCP
    # (proto 0 -> Nagle + delayed ACK = ~40 ms per small response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise StartupError(
                f"{flag}: port {port} is already in use on {host}: {err.strerror}; "
                f"stop the process that holds it or pass another port with {flag}"
            ) from err
        raise StartupError(
            f"{flag}: cannot listen on {host}:{port}: {err.strerror or err}; "
            f"check the address and port given with {flag}"
        ) from err
    sock.setblocking(False)
    return sock


def bind_internal(opts: Options) -> socket.socket:
    host = opts.dapr_internal_grpc_listen_address
    if opts.dapr_internal_grpc_port is not None:
        return bind(host, opts.dapr_internal_grpc_port, "--dapr-internal-grpc-port")
    with contextlib.suppress(StartupError):
        return bind(host, stable_random_port(opts.app_id), "--dapr-internal-grpc-port")
    return bind(host, 0, "--dapr-internal-grpc-port")


def listen_hosts(opts: Options) -> tuple[str, ...]:
    return opts.dapr_listen_addresses or (opts.dapr_listen_address,)


def bind_each(hosts: Sequence[str], port: int, flag: str) -> list[socket.socket]:
    """One socket per ``--dapr-listen-addresses`` entry. As in Dapr, an address that cannot be
    bound (e.g. ``::1`` with IPv6 off) is skipped while another one works (with a warning).
    Port 0: the first address gets a free port, the others the same one."""
    socks: list[socket.socket] = []
    errors: list[StartupError] = []
    for host in hosts:
        try:
            socks.append(bind(host, port, flag))
        except StartupError as err:
            errors.append(err)
        else:
            port = socks[-1].getsockname()[1]
    if not socks:
        raise errors[0]
    for problem in errors:
        log.warning("%s; listening on the other --dapr-listen-addresses only", problem)
    return socks


def bind_api_grpc(opts: Options) -> list[socket.socket]:
    """``--dapr-grpc-port``. Left at its default (50001, also Sentry's default port), a taken
    port moves the API to a free one with a warning instead of failing (docs/choices.md)."""
    hosts = listen_hosts(opts)
    if opts.dapr_grpc_port is not None:
        return bind_each(hosts, opts.dapr_grpc_port, "--dapr-grpc-port")
    try:
        return bind_each(hosts, DEFAULT_GRPC_PORT, "--dapr-grpc-port")
    except StartupError:
        socks = bind_each(hosts, 0, "--dapr-grpc-port")
        sock = socks[0]
        log.warning(
            "gRPC API port %d is in use (Sentry listens there by default): serving the gRPC API "
            "on port %d instead; give the app DAPR_GRPC_PORT=%d, or pass --dapr-grpc-port",
            DEFAULT_GRPC_PORT,
            sock.getsockname()[1],
            sock.getsockname()[1],
        )
        return socks


def bind_metrics(opts: Options) -> socket.socket:
    """``--metrics-port``. Left at its default (9090, also Sentry's default metrics port), a taken
    port moves the metrics server to a free one with a warning instead of failing
    (docs/choices.md); a port given with the flag and taken is fatal."""
    host = opts.metrics_listen_address
    if opts.metrics_port_given:
        return bind(host, opts.metrics_port, "--metrics-port")
    try:
        return bind(host, opts.metrics_port, "--metrics-port")
    except StartupError:
        sock = bind(host, 0, "--metrics-port")
        log.warning(
            "Metrics port %d is in use (Sentry serves its metrics there by default): serving "
            "metrics on port %d instead; pass --metrics-port to choose the port",
            opts.metrics_port,
            sock.getsockname()[1],
        )
        return sock
