"""The gRPC edge: ``dapr.proto.sentry.v1.CA/SignCertificate`` on grpclib (the only protobuf user).

Requests are converted to :class:`SignRequest`, admitted by :class:`SignQueue` (or refused with
``RESOURCE_EXHAUSTED`` when they cannot start signing in time), answered by
:class:`CertificateAuthority`, and errors are mapped in one place: :class:`SignError` keeps its code
and Dapr's message; bytes that are not a whole protobuf request (a cut frame, bad wire format) get
``INVALID_ARGUMENT`` with grpc-go's text; anything else is logged with its traceback and becomes
``INTERNAL "failed to sign certificate"``. A request larger than ``max_request_bytes`` is refused
from its length prefix, before its body is read. Every log line a client can cause is one line and
rate-limited per kind (:class:`LimitedLog`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from functools import partial

from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CABase
from pysentry.sentry.admission import (
    DEFAULT_MAX_WAIT_S,
    MAX_QUEUED,
    Overloaded,
    SignQueue,
    Ticket,
)
from pysentry.sentry.ca import CertificateAuthority, Code, SignedCertificate, SignError
from pysentry.sentry.coalesce import CoalescingServer
from pysentry.sentry.loglimit import LimitedLog
from pysentry.sentry.validators import SignRequest

log = logging.getLogger(__name__)

Request = sentry_pb2.SignCertificateRequest
Response = sentry_pb2.SignCertificateResponse
_PREFIX = 5  # gRPC message prefix: 1 byte compressed flag + 4 bytes big-endian length
REQUEST_READ_TIMEOUT_S = 10.0
"""A client that does not send its whole request in this time gets DEADLINE_EXCEEDED."""
UNMARSHAL = "grpc: error unmarshalling request: "
"""grpc-go's prefix. It answers INTERNAL; we answer INVALID_ARGUMENT (the bytes are at fault)."""
TRUNCATED = UNMARSHAL + "unexpected EOF"
BAD_WIRE_FORMAT = UNMARSHAL + "proto: cannot parse invalid wire-format data"


def to_sign_request(message: Request) -> SignRequest:
    return SignRequest(
        app_id=message.id,
        namespace=message.namespace,
        csr_pem=message.certificate_signing_request,
        token=message.token,
        trust_domain=message.trust_domain,
        validator=int(message.token_validator),
    )


def to_response(signed: SignedCertificate) -> Response:
    # ``not_after`` is timezone-aware (a certificate's); this is what FromDatetime computes.
    at = signed.not_after
    valid_until = Timestamp(seconds=int(at.timestamp()), nanos=at.microsecond * 1000)
    return Response(
        workload_certificate=signed.chain_pem,
        trust_chain_certificates=[signed.anchors_pem],
        valid_until=valid_until,
    )


class CaService(CABase):
    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        max_request_bytes: int,
        read_timeout_s: float = REQUEST_READ_TIMEOUT_S,
        max_sign_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_queued: int = MAX_QUEUED,
        limited_log: LimitedLog | None = None,
    ) -> None:
        self._ca = ca
        self._max_request_bytes = max_request_bytes
        self._read_timeout_s = read_timeout_s
        self.queue = SignQueue(
            ca.settings.max_concurrent_signs, max_wait_s=max_sign_wait_s, max_queued=max_queued
        )
        self._log = limited_log or LimitedLog(log)

    async def _recv_bounded(self, stream: Stream[Request, Response]) -> Request:
        # grpclib has no receive limit: read the length prefix ourselves (what
        # grpclib.stream.recv_message does, minus the unbounded read), so an oversized body is
        # never buffered. ``_stream`` is the HTTP/2 stream under the gRPC stream.
        raw = stream._stream
        prefix = await _read_exact(raw, _PREFIX)
        if prefix == b"":
            raise GRPCError(Status.INVALID_ARGUMENT, "missing request message")
        if prefix is None:
            raise GRPCError(Status.INVALID_ARGUMENT, TRUNCATED)
        compressed, length = struct.unpack(">?I", prefix)
        if compressed:
            raise GRPCError(Status.UNIMPLEMENTED, "compressed requests are not supported")
        if length > self._max_request_bytes:
            log.debug("request refused: %d bytes (limit %d)", length, self._max_request_bytes)
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request too large: {length} bytes, the limit is {self._max_request_bytes}",
            )
        body = await _read_exact(raw, length)
        if body is None or len(body) < length:
            raise GRPCError(Status.INVALID_ARGUMENT, TRUNCATED)
        message = Request()
        try:
            message.ParseFromString(body)
        except Exception as err:  # DecodeError, or whatever else upb finds wrong
            raise GRPCError(Status.INVALID_ARGUMENT, BAD_WIRE_FORMAT) from err
        return message

    async def _receive(self, stream: Stream[Request, Response]) -> Request:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                return await self._recv_bounded(stream)
        except TimeoutError as err:
            raise GRPCError(
                Status.DEADLINE_EXCEEDED, f"request not received within {self._read_timeout_s:g}s"
            ) from err

    def _ticket(self, stream: Stream[Request, Response]) -> Ticket:
        # The HTTP/2 stream's creation time is when its headers were read off the socket: time
        # spent waiting for the event loop since then counts as waiting to be signed.
        now = self.queue.clock()
        arrived = stream._stream.created or now
        remaining = None if stream.deadline is None else stream.deadline.time_remaining()
        return self.queue.ticket(min(arrived, now), remaining)

    async def SignCertificate(self, stream: Stream[Request, Response]) -> None:
        ticket = self._ticket(stream)
        request: SignRequest | None = None
        try:
            self.queue.check(ticket)
            request = to_sign_request(await self._receive(stream))
            signed = await self.queue.submit(partial(self._ca.sign, request), ticket)
        except Overloaded as err:
            self._ca.count_refused()
            self._warn("overloaded", stream, request, err.message)
            raise GRPCError(Status.RESOURCE_EXHAUSTED, err.message) from err
        except SignError as err:
            if err.code is Code.INVALID_ARGUMENT:
                self._warn("invalid-request", stream, request, err.message)
            raise GRPCError(Status[err.code.value], err.message) from err
        except GRPCError as err:
            if err.status is Status.INVALID_ARGUMENT:
                self._warn("malformed-request", stream, request, err.message or "")
            raise
        except Exception as err:
            self._log.log(
                "internal", logging.ERROR, "SignCertificate failed unexpectedly", exc_info=True
            )
            raise GRPCError(Status.INTERNAL, "failed to sign certificate") from err
        log.debug("Successfully signed certificate for %s/%s", request.namespace, request.app_id)
        await stream.send_message(to_response(signed))

    def _warn(
        self, kind: str, stream: Stream[Request, Response], request: SignRequest | None, why: str
    ) -> None:
        who = "" if request is None else f" for ns={request.namespace!r} app-id={request.app_id!r}"
        self._log.log(
            kind,
            logging.WARNING,
            "SignCertificate refused: request from %s%s: %s",
            _peer(stream),
            who,
            why.replace("\n", "; "),
        )


async def _read_exact(raw: object, size: int) -> bytes | None:
    """``size`` bytes, ``b""`` at a clean end of stream, None when the stream ends mid-way."""
    try:
        data: bytes = await raw.recv_data(size)  # type: ignore[attr-defined]
    except AssertionError:  # grpclib's Buffer: "Received less data than expected"
        return None
    return data


def _peer(stream: Stream[Request, Response]) -> str:
    addr = stream.peer.addr()
    if not addr:
        return "unknown peer"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def build_server(
    ca: CertificateAuthority, *, max_request_bytes: int, max_sign_wait_s: float = DEFAULT_MAX_WAIT_S
) -> Server:
    return CoalescingServer(
        [CaService(ca, max_request_bytes=max_request_bytes, max_sign_wait_s=max_sign_wait_s)]
    )
