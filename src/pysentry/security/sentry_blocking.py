"""The unary gRPC call of :mod:`.sentry_call`, on a blocking socket: daprd's first certificate.

daprd requests its first certificate before it imports asyncio and uvloop (a fifth of its
start-up before that certificate, issue 13): there is nothing else to do until it has one. The
same :class:`~.sentry_h2.Exchange` makes the request and reads the answer, so the bytes sent
and the errors raised are those of :func:`.sentry_call.unary_call`; here the connection's errors
are the socket's:

* the connection (``socket.create_connection``: every address in turn, as asyncio does) raises
  ``ConnectionRefusedError``, ``socket.gaierror``, other ``OSError``; the TLS handshake
  ``ssl.SSLError``; the server's SVID is checked after the handshake (``PeerRejected``);
* a connection that fails once the request is sent is ``StreamTerminatedError('Connection
  lost')``, as asyncio's ``connection_lost`` makes it;
* ``TimeoutError`` when ``timeout`` (the whole call, as ``asyncio.timeout`` bounds it) is over.

The connection is closed afterwards: TLS close_notify is sent (not waited for), then the socket
is closed.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

from grpclib.exceptions import StreamTerminatedError

from pysentry.clock import Clock
from pysentry.pki.svid import Authorizer
from pysentry.security.sentry_h2 import LOST, Exchange, request_headers
from pysentry.security.tls import AnchorsLike, peer_spiffe_id

_READ = 65536


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the call's deadline passed")
    return left


def _ascii_host(host: str) -> str | bytes:
    """``host`` as bytes where Python's ``idna`` codec would give the same bytes (ASCII, every
    label 1-63 characters), so the socket and ssl modules do not load the codec (and stringprep,
    unicodedata) for it; else ``host`` itself, encoded (or refused) by the codec as before."""
    if not host.isascii():
        return host
    labels = host.split(".")
    if not all(0 < len(label) < 64 for label in labels[:-1]) or len(labels[-1]) >= 64:
        return host
    return host.encode("ascii")


def blocking_unary_call(
    host: str,
    port: int,
    path: str,
    message: bytes,
    *,
    context: ssl.SSLContext,
    anchors: AnchorsLike,
    authorizer: Authorizer | None,
    clock: Clock,
    timeout: float,
) -> bytes:
    """The response message's bytes; the connection is closed afterwards."""
    deadline = time.monotonic() + timeout
    name = _ascii_host(host)
    raw = socket.create_connection((name, port), timeout=_left(deadline))  # type: ignore[arg-type]
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(_left(deadline))
        sock = context.wrap_socket(raw, server_hostname=name)
    except BaseException:
        raw.close()
        raise
    try:
        peer_spiffe_id(sock, anchors, authorizer, clock())
    except BaseException:
        sock.close()  # aborted: nothing is sent to a server that is not Sentry
        raise
    try:
        exchange = Exchange()
        headers = request_headers(host, port, path, deadline - time.monotonic())
        _write(sock, exchange.start() + exchange.send(headers, message), deadline)
        while exchange.ended is None:
            sock.settimeout(_left(deadline))
            try:
                data = sock.recv(_READ)
            except TimeoutError:
                raise
            except OSError:  # reset, or TLS failed: asyncio reports the connection lost
                data = b""
            if not data:
                exchange.end(LOST)
                break
            out, close = exchange.received(data)
            if close:
                break
            if out:
                _write(sock, out, deadline)
        return exchange.outcome()
    finally:
        _close(sock)


def _write(sock: ssl.SSLSocket, data: bytes, deadline: float) -> None:
    sock.settimeout(_left(deadline))
    try:
        sock.sendall(data)
    except TimeoutError:
        raise
    except OSError as err:
        raise StreamTerminatedError(LOST) from err


def _close(sock: ssl.SSLSocket) -> None:
    """close_notify without waiting for the peer's, then close."""
    with contextlib.suppress(OSError, ValueError):
        sock.setblocking(False)
        sock.unwrap()
    sock.close()
