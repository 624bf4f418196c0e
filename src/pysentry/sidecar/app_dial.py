"""Reaching the app's port: the app channel's dial, and Dapr's wait for the app at start-up.

:func:`dial` tries each address of the app's host in turn and fails with one
:class:`DialError`; :func:`go_dial_error` words it as Go's ``*url.Error``, as Dapr's callee
reports it. :func:`wait_for_app` is Dapr's ``blockUntilAppIsReady``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from pysentry.sidecar.app_http import Connection


def go_dial_error(verb: str, url: str, host: str, port: int, err: OSError) -> str:
    """Go's ``*url.Error`` text for a failed dial, as Dapr's callee reports it:
    ``Post "http://127.0.0.1:8080/m": dial tcp 127.0.0.1:8080: connect: connection refused``;
    without an errno, aiohttp's text (what this channel said before it wrote its own client)."""
    if not err.errno:
        return f"Cannot connect to host {host}:{port} ssl:default [{err.strerror or err}]"
    reason = os.strerror(err.errno)
    reason = reason[:1].lower() + reason[1:]
    op = verb[:1] + verb[1:].lower()
    return f'{op} "{url}": dial tcp {host}:{port}: connect: {reason}'


class DialError(Exception):
    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.os_error = err


async def dial(host: str, port: int) -> Connection:
    """Each address of ``host`` in turn; the errors, when all fail alike, as one ``OSError``."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise DialError(err) from err
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as err:
            sock.close()
            errors.append(err)
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _, conn = await loop.create_connection(Connection, sock=sock)
        return conn
    if len({e.errno for e in errors}) == 1 and errors[0].errno:
        raise DialError(OSError(errors[0].errno, os.strerror(errors[0].errno)))
    raise DialError(OSError(None, "; ".join(map(str, errors)) or f"no address for {host!r}"))


APP_DIAL_TIMEOUT_S = 0.5
APP_DIAL_INTERVAL_S = 0.1


async def wait_for_app(address: str, port: int, protocol: str) -> None:
    """Dapr's ``blockUntilAppIsReady``: dial the app's port every 100 ms (500 ms per attempt)
    until it accepts a connection; ``/v1.0/healthz`` answers not ready until then. Logged as
    Dapr's runtime does (scope ``dapr.runtime``)."""
    runtime_log = logging.getLogger("pysentry.sidecar")
    runtime_log.info(
        "application protocol: %s. waiting on port %d.  This will block until the app is "
        "listening on that port.",
        protocol,
        port,
    )
    while True:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), APP_DIAL_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            await asyncio.sleep(APP_DIAL_INTERVAL_S)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        break
    runtime_log.info("application discovered on port %d", port)
