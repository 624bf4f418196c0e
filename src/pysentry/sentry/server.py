"""The gRPC edge: ``dapr.proto.sentry.v1.CA/SignCertificate`` on grpclib (the only protobuf user).

Requests are converted to :class:`SignRequest`, answered by :class:`CertificateAuthority`, and
errors are mapped in one place: :class:`SignError` keeps its code and Dapr's message; anything else
is logged with its traceback and becomes ``INTERNAL "failed to sign certificate"``. A request larger
than ``max_request_bytes`` is refused from its length prefix, before its body is read.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream

from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2
from pysentry.proto.dapr.proto.sentry.v1.sentry_grpc import CABase
from pysentry.sentry.ca import CertificateAuthority, SignedCertificate, SignError
from pysentry.sentry.validators import SignRequest

log = logging.getLogger(__name__)

Request = sentry_pb2.SignCertificateRequest
Response = sentry_pb2.SignCertificateResponse
_PREFIX = 5  # gRPC message prefix: 1 byte compressed flag + 4 bytes big-endian length
REQUEST_READ_TIMEOUT_S = 10.0
"""A client that does not send its whole request in this time loses its signing slot."""


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
    valid_until = Timestamp()
    valid_until.FromDatetime(signed.not_after)
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
    ) -> None:
        self._ca = ca
        self._max_request_bytes = max_request_bytes
        self._read_timeout_s = read_timeout_s

    async def _recv_bounded(self, stream: Stream[Request, Response]) -> Request:
        # grpclib has no receive limit: read the length prefix ourselves (what
        # grpclib.stream.recv_message does, minus the unbounded read), so an oversized body is
        # never buffered. ``_stream`` is the HTTP/2 stream under the gRPC stream.
        raw = stream._stream
        prefix = await raw.recv_data(_PREFIX)
        if len(prefix) < _PREFIX:
            raise GRPCError(Status.INVALID_ARGUMENT, "missing request message")
        compressed, length = struct.unpack(">?I", prefix)
        if compressed:
            raise GRPCError(Status.UNIMPLEMENTED, "compressed requests are not supported")
        if length > self._max_request_bytes:
            log.debug("request refused: %d bytes (limit %d)", length, self._max_request_bytes)
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request too large: {length} bytes, the limit is {self._max_request_bytes}",
            )
        body = await raw.recv_data(length)
        message = Request()
        try:
            message.ParseFromString(body)
        except DecodeError as err:
            raise GRPCError(Status.INVALID_ARGUMENT, f"malformed request: {err}") from err
        return message

    async def SignCertificate(self, stream: Stream[Request, Response]) -> None:
        try:
            with self._ca.admission():
                try:
                    async with asyncio.timeout(self._read_timeout_s):
                        message = await self._recv_bounded(stream)
                except TimeoutError as err:
                    raise GRPCError(
                        Status.DEADLINE_EXCEEDED,
                        f"request not received within {self._read_timeout_s:g}s",
                    ) from err
                signed = await self._ca.sign(to_sign_request(message))
        except SignError as err:
            raise GRPCError(Status[err.code.value], err.message) from err
        except GRPCError:
            raise
        except Exception as err:
            log.error("SignCertificate failed unexpectedly", exc_info=True)
            raise GRPCError(Status.INTERNAL, "failed to sign certificate") from err
        await stream.send_message(to_response(signed))


def build_server(ca: CertificateAuthority, *, max_request_bytes: int) -> Server:
    return Server([CaService(ca, max_request_bytes=max_request_bytes)])
