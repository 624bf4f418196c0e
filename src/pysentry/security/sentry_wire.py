"""``SignCertificateRequest``/``SignCertificateResponse`` on the wire, without protobuf.

daprd's first identity is on its start-up path, and importing protobuf and the generated
``sentry_pb2`` (descriptor pool, well-known types) cost about as much as the whole request
(issue 13). The two messages are small and fixed (``proto/dapr/proto/sentry/v1/sentry.proto``),
so the Sentry client encodes and decodes them here, as protobuf does:

* the request: proto3 fields in field-number order, default values (``""``, ``UNKNOWN``) left
  out, each ``jwt_audiences`` entry as its own field 7 (byte-identical to ``SerializeToString``);
* the response: the last value of a singular field wins, an embedded message seen twice is
  merged, unknown fields and known fields with another wire type are skipped; ``valid_until`` is
  ``None`` when the field is absent (``HasField`` false). Truncated or malformed input is a
  :class:`WireError`.

:mod:`.sentry_call` carries them (``application/grpc``, as grpclib's ``ProtoCodec`` would).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

#: ``SignCertificateRequest.TokenValidator`` numbers by name.
TOKEN_VALIDATORS = {"UNKNOWN": 0, "INSECURE": 1, "KUBERNETES": 2, "JWKS": 3}
SIGN_CERTIFICATE = "/dapr.proto.sentry.v1.CA/SignCertificate"

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


class WireError(ValueError):
    """A Sentry message that does not parse."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, i + 1
        shift += 7
    raise WireError(f"truncated or overlong varint at byte {pos}")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field of ``data``."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(data, pos)
            yield number, wire, value
            continue
        if wire == _LEN:
            size, pos = _read_varint(data, pos)
        elif wire == _FIXED64:
            size = 8
        elif wire == _FIXED32:
            size = 4
        else:
            raise WireError(f"field {number}: unsupported wire type {wire}")
        if pos + size > end:
            raise WireError(f"field {number}: truncated ({size} bytes announced)")
        yield number, wire, data[pos : pos + size]
        pos += size


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class SignCertificateRequest:
    """The request (plain class: a dataclass costs ~0.5 ms to create at import)."""

    __slots__ = (
        "certificate_signing_request",
        "id",
        "jwt_audiences",
        "namespace",
        "token",
        "token_validator",
        "trust_domain",
    )

    def __init__(
        self,
        *,
        id: str = "",
        token: str = "",
        trust_domain: str = "",
        namespace: str = "",
        certificate_signing_request: bytes = b"",
        token_validator: str = "UNKNOWN",
        jwt_audiences: Sequence[str] = (),
    ) -> None:
        self.id = id
        self.token = token
        self.trust_domain = trust_domain
        self.namespace = namespace
        self.certificate_signing_request = certificate_signing_request
        self.token_validator = token_validator
        self.jwt_audiences = tuple(jwt_audiences)

    def SerializeToString(self) -> bytes:
        out = [
            _len_field(number, text.encode())
            for number, text in (
                (1, self.id),
                (2, self.token),
                (3, self.trust_domain),
                (4, self.namespace),
            )
            if text
        ]
        if self.certificate_signing_request:
            out.append(_len_field(5, self.certificate_signing_request))
        if validator := TOKEN_VALIDATORS[self.token_validator]:
            out.append(_varint(6 << 3 | _VARINT) + _varint(validator))
        out.extend(_len_field(7, audience.encode()) for audience in self.jwt_audiences)
        return b"".join(out)


class Timestamp:
    __slots__ = ("nanos", "seconds")

    def __init__(self, seconds: int = 0, nanos: int = 0) -> None:
        self.seconds = seconds
        self.nanos = nanos

    def merge(self, data: bytes) -> None:
        for number, wire, value in _fields(data):
            if wire != _VARINT or not isinstance(value, int):
                continue
            if number == 1:
                self.seconds = _signed(value, 64)
            elif number == 2:
                self.nanos = _signed(value, 32)


class SignCertificateResponse:
    __slots__ = ("trust_chain_certificates", "valid_until", "workload_certificate")

    def __init__(
        self,
        workload_certificate: bytes = b"",
        trust_chain_certificates: Sequence[bytes] = (),
        valid_until: Timestamp | None = None,
    ) -> None:
        self.workload_certificate = workload_certificate
        self.trust_chain_certificates = list(trust_chain_certificates)
        self.valid_until = valid_until

    @classmethod
    def FromString(cls, data: bytes) -> SignCertificateResponse:
        response = cls()
        for number, wire, value in _fields(data):
            if wire != _LEN or not isinstance(value, bytes):
                continue
            if number == 1:
                response.workload_certificate = value
            elif number == 2:
                response.trust_chain_certificates.append(value)
            elif number == 3:
                if response.valid_until is None:
                    response.valid_until = Timestamp()
                response.valid_until.merge(value)
        return response
