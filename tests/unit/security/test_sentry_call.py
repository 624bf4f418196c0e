"""sentry_call answers as grpclib's client does: both against one scripted h2 server on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from h2.settings import SettingCodes

from pysentry.clock import system_clock
from pysentry.security.identity import X509Svid
from pysentry.security.sentry_blocking import _ascii_host, blocking_unary_call
from pysentry.security.sentry_call import unary_call
from pysentry.security.sentry_h2 import WINDOW, Exchange, request_headers
from pysentry.security.sentry_wire import WireError
from pysentry.security.tls import client_context, server_context
from pysentry.spiffe import SpiffeId
from pysentry.testing import TestCA
from tests.unit.security.rawcodec import RawCodec

PATH = "/dapr.proto.sentry.v1.CA/SignCertificate"
OK_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
Step = tuple[Any, ...]


def framed(message: bytes, *, compressed: bool = False) -> bytes:
    return bytes([compressed]) + len(message).to_bytes(4, "big") + message


SCRIPTS: dict[str, list[Step]] = {
    "ok": [
        ("headers", OK_HEADERS, False),
        ("data", framed(b"reply")),
        ("headers", [("grpc-status", "0")], True),
    ],
    "http 503": [("headers", [(":status", "503")], True)],
    "http 418": [("headers", [(":status", "418"), ("content-type", "text/plain")], True)],
    "no content-type": [("headers", [(":status", "200")], True)],
    "html": [("headers", [(":status", "200"), ("content-type", "text/html")], True)],
    "trailers-only refusal": [
        (
            "headers",
            [*OK_HEADERS, ("grpc-status", "7"), ("grpc-message", "no%20way%2C%20sorry")],
            True,
        )
    ],
    "refusal in trailers": [
        ("headers", OK_HEADERS, False),
        ("headers", [("grpc-status", "14"), ("grpc-message", "later")], True),
    ],
    "invalid grpc-status": [
        ("headers", OK_HEADERS, False),
        ("data", framed(b"reply")),
        ("headers", [("grpc-status", "abc")], True),
    ],
    "no grpc-status": [
        ("headers", OK_HEADERS, False),
        ("data", framed(b"reply")),
        ("headers", [("grpc-message", "x")], True),
    ],
    "reset after headers": [("headers", OK_HEADERS, False), ("reset", 8)],
    "reset with refusal headers": [("headers", [(":status", "503")], False), ("reset", 2)],
    "goaway": [("goaway", 11)],
    "connection closed": [("close",)],
    "compressed": [
        ("headers", OK_HEADERS, False),
        ("data", framed(b"reply", compressed=True)),
        ("headers", [("grpc-status", "0")], True),
    ],
    "padded, pinged, in pieces": [
        ("ping",),
        ("headers", OK_HEADERS, False),
        ("padded", framed(b"re"), 7),
        ("padded", framed(b"ply")[5:], 0),
        ("headers", [("grpc-status", "0")], True),
    ],
    "long refusal (CONTINUATION frames)": [
        ("headers", OK_HEADERS, False),
        ("headers", [("grpc-status", "9"), ("grpc-message", "x" * 40_000)], True),
    ],
    "data then reset": [("headers", OK_HEADERS, False), ("data", framed(b"rep")), ("reset", 2)],
}


class Scripted(asyncio.Protocol):
    """Answers every request with ``script``."""

    def __init__(self, script: list[Step]) -> None:
        config = H2Configuration(client_side=False, header_encoding="ascii")
        self.conn = H2Connection(config=config)
        self.script = script
        self.requests: list[dict[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                self.requests.append(dict(event.headers))  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded) and event.stream_id is not None:
                self.respond(event.stream_id)
        self.transport.write(self.conn.data_to_send())

    def respond(self, stream_id: int) -> None:
        for kind, *args in self.script:
            if kind == "headers":
                self.conn.send_headers(stream_id, args[0], end_stream=args[1])
            elif kind == "data":
                self.conn.send_data(stream_id, args[0])
            elif kind == "padded":
                self.conn.send_data(stream_id, args[0], pad_length=args[1])
            elif kind == "ping":
                self.conn.ping(b"12345678")
            elif kind == "reset":
                self.conn.reset_stream(stream_id, args[0])
            elif kind == "goaway":
                self.conn.close_connection(args[0])
            elif kind == "close":
                self.transport.close()
                return


class Harness:
    """Scripted h2 servers on 127.0.0.1 presenting a Sentry SVID of ``ca``."""

    def __init__(self) -> None:
        self.ca = TestCA.create("public")
        chain, key = self.ca.issue_svid(SpiffeId.parse("spiffe://public/ns/default/dapr-sentry"))
        svid = X509Svid.from_chain(chain, key)
        self.context = server_context(svid, None, require_client_cert=False)
        self.servers: list[asyncio.Server] = []
        self.protocols: list[Scripted] = []

    async def start(self, script: list[Step]) -> int:
        def made() -> Scripted:
            self.protocols.append(Scripted(script))
            return self.protocols[-1]

        loop = asyncio.get_running_loop()
        server = await loop.create_server(made, "127.0.0.1", 0, ssl=self.context)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def requests(self) -> list[dict[str, str]]:
        return [r for p in self.protocols for r in p.requests]


@pytest.fixture
async def sentry() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    for server in harness.servers:
        server.close()
        await server.wait_closed()


async def with_grpclib(ca: TestCA, port: int) -> bytes:
    context = client_context(None, (ca.root_cert,), verify_after_handshake=True)
    channel = Channel("127.0.0.1", port, ssl=context, codec=RawCodec())
    try:
        method: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(channel, PATH, bytes, bytes)
        return await method(b"request", timeout=3)
    finally:
        channel.close()


async def with_sentry_call(ca: TestCA, port: int) -> bytes:
    context = client_context(None, (ca.root_cert,), verify_after_handshake=True)
    return await unary_call(
        "127.0.0.1",
        port,
        PATH,
        b"request",
        context=context,
        anchors=(ca.root_cert,),
        authorizer=None,
        clock=system_clock,
        timeout=3,
    )


async def with_blocking_call(ca: TestCA, port: int, timeout: float = 3) -> bytes:
    """daprd's first call: blocking, on a thread here (the scripted server runs on this loop)."""
    context = client_context(None, (ca.root_cert,), verify_after_handshake=True)
    return await asyncio.to_thread(
        blocking_unary_call,
        "127.0.0.1",
        port,
        PATH,
        b"request",
        context=context,
        anchors=(ca.root_cert,),
        authorizer=None,
        clock=system_clock,
        timeout=timeout,
    )


async def outcome(call: Any) -> tuple[str, str]:
    try:
        async with asyncio.timeout(5):
            return "reply", repr(await call)
    except (GRPCError, StreamTerminatedError, NotImplementedError) as err:
        status = f"{err.status.name} " if isinstance(err, GRPCError) else ""
        return type(err).__name__, f"{status}{err.message if isinstance(err, GRPCError) else err}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_same_reply_or_error_as_grpclib(name: str, sentry: Harness) -> None:
    port = await sentry.start(SCRIPTS[name])
    theirs = await outcome(with_grpclib(sentry.ca, port))
    ours = await outcome(with_sentry_call(sentry.ca, port))
    blocking = await outcome(with_blocking_call(sentry.ca, port))
    assert ours == theirs
    assert blocking == theirs


def test_the_connection_opens_as_h2_opens_it_for_grpclib() -> None:
    """Preface, SETTINGS, window update, SETTINGS and the request's frames: the bytes h2 writes
    for grpclib's client configuration."""
    config = H2Configuration(
        client_side=True,
        header_encoding="ascii",
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_inbound_headers=False,
        normalize_outbound_headers=False,
    )
    conn = H2Connection(config=config)
    conn.initiate_connection()
    conn.increment_flow_control_window(WINDOW - conn.local_settings.initial_window_size)
    conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
    headers = request_headers("127.0.0.1", 50001, PATH, 2.5)
    stream_id = conn.get_next_available_stream_id()
    conn.send_headers(stream_id, headers)
    conn.send_data(stream_id, framed(b"request" * 300), end_stream=True)
    exchange = Exchange()
    ours = exchange.start() + exchange.send(headers, b"request" * 300)
    assert ours == conn.data_to_send()


async def test_the_request_carries_grpclibs_headers(sentry: Harness) -> None:
    port = await sentry.start(SCRIPTS["ok"])
    await with_grpclib(sentry.ca, port)
    await with_sentry_call(sentry.ca, port)
    await with_blocking_call(sentry.ca, port)
    theirs, ours, blocking = sentry.requests()
    assert ours.pop("grpc-timeout")[-1] == theirs.pop("grpc-timeout")[-1] == "m"  # ~3 s left
    assert blocking.pop("grpc-timeout")[-1] == "m"
    assert ours == theirs
    assert blocking == theirs


@pytest.mark.parametrize("call", [with_sentry_call, with_blocking_call])
async def test_no_message_is_a_wire_error(sentry: Harness, call: Any) -> None:
    port = await sentry.start([("headers", [*OK_HEADERS, ("grpc-status", "0")], True)])
    with pytest.raises(WireError, match="no message"):
        await call(sentry.ca, port)


@pytest.mark.parametrize("call", [with_sentry_call, with_blocking_call])
async def test_grpc_message_is_percent_decoded(sentry: Harness, call: Any) -> None:
    port = await sentry.start(SCRIPTS["trailers-only refusal"])
    with pytest.raises(GRPCError) as caught:
        await call(sentry.ca, port)
    assert (caught.value.status, caught.value.message) == (
        Status.PERMISSION_DENIED,
        "no way, sorry",
    )


def _open_client_sockets(server_port: int) -> list[str]:
    """States of TCP sockets whose remote end is ``server_port`` and that still have an owner
    (ESTABLISHED or CLOSE_WAIT: closed sockets are FIN_WAIT/TIME_WAIT), from /proc/net/tcp."""
    states = {"01": "ESTABLISHED", "08": "CLOSE_WAIT"}
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == server_port and fields[3] in states:
            found.append(states[fields[3]])
    return found


@pytest.mark.parametrize("call", [with_sentry_call, with_blocking_call])
async def test_the_connection_is_closed_when_the_call_returns(sentry: Harness, call: Any) -> None:
    # A caller that ends its event loop right after (asyncio.run) must not leave the socket
    # open: the TLS close is awaited, not just started.
    port = await sentry.start(SCRIPTS["ok"])
    await call(sentry.ca, port)
    assert _open_client_sockets(port) == []


async def test_the_blocking_call_ends_at_its_timeout() -> None:
    # A listener that never answers the TLS handshake: TimeoutError once the call's time is up.
    ca = TestCA.create("public")
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await with_blocking_call(ca, port, timeout=0.3)
        assert 0.25 < time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("host", "given"),
    [
        ("127.0.0.1", b"127.0.0.1"),
        ("localhost", b"localhost"),
        ("sentry.dapr-system.svc.", b"sentry.dapr-system.svc."),
        ("höst", "höst"),  # the idna codec encodes it, as before
        ("a..b", "a..b"),  # and refuses these, as before
        ("x" * 64 + ".example", "x" * 64 + ".example"),
        ("example." + "x" * 64, "example." + "x" * 64),
    ],
)
def test_hosts_go_to_the_socket_as_the_idna_codec_would_give_them(
    host: str, given: str | bytes
) -> None:
    assert _ascii_host(host) == given
    if isinstance(given, bytes):
        assert host.encode("idna") == given


def _in_frames(data: bytes, size: int = 16_384) -> list[Step]:
    return [("data", data[i : i + size]) for i in range(0, len(data), size)]


@pytest.mark.parametrize("call", [with_sentry_call, with_blocking_call])
async def test_a_message_over_grpc_gos_limit_is_refused_at_once(sentry: Harness, call: Any) -> None:
    """A response announcing more than 4 MiB fails as grpc-go's client (Dapr's) fails it, as soon
    as its length prefix arrives, and its data is not kept; a 3 MiB one is a reply."""
    big = (5 << 20).to_bytes(4, "big")
    port = await sentry.start(
        [("headers", OK_HEADERS, False), *_in_frames(b"\0" + big + b"x" * 65_536)]
    )
    started = time.monotonic()
    with pytest.raises(GRPCError) as caught:
        await call(sentry.ca, port)
    assert time.monotonic() - started < 2  # not the call's 3 s timeout
    assert (caught.value.status, caught.value.message) == (
        Status.RESOURCE_EXHAUSTED,
        "grpc: received message larger than max (5242880 vs. 4194304)",
    )
    message = b"m" * (3 << 20)
    port = await sentry.start(
        [
            ("headers", OK_HEADERS, False),
            *_in_frames(framed(message)),
            ("headers", [("grpc-status", "0")], True),
        ]
    )
    assert await call(sentry.ca, port) == message
