"""Why a Sentry request failed: :class:`SentryRequestFailed`, with daprd's texts and reasons.

Every exception an attempt can end with is translated here, at one place
(:func:`attempt_failure`): a timeout, a refused or reset connection or a name that does not
resolve comes back for the retry loop; an untrusted or foreign Sentry certificate, a failed TLS
handshake or a reply that does not parse is raised at once. Sentry's own refusals read as
grpc-go prints a status (:func:`sign_refused`, ``rpc error: code = PermissionDenied desc = ...``).
"""

from __future__ import annotations

import errno
import socket
import ssl
from datetime import timedelta

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from pysentry.errors import PeerRejected, SentryUnavailable
from pysentry.pki.svid import UntrustedChain
from pysentry.security.sentry_wire import WireError


class SentryRequestFailed(SentryUnavailable):
    """No certificate from Sentry. ``reason``: metric reason; ``status``: gRPC status name."""

    def __init__(self, message: str, *, reason: str, status: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def go_code_name(status: Status) -> str:
    """grpc-go's ``codes.Code.String()``: ``PERMISSION_DENIED`` -> ``PermissionDenied``."""
    special = {Status.OK: "OK"}
    return special.get(status, "".join(p.capitalize() for p in status.name.split("_")))


def rpc_error_text(status: Status, message: str | None) -> str:
    return f"rpc error: code = {go_code_name(status)} desc = {message or ''}"


def sign_refused(err: GRPCError) -> SentryRequestFailed:
    """Sentry answered ``SignCertificate`` with an error status."""
    return SentryRequestFailed(
        f"error from sentry SignCertificate: {rpc_error_text(err.status, err.message)}",
        reason="sign",
        status=err.status.name,
    )


def attempt_failure(
    err: Exception, *, address: str, host: str, timeout: timedelta, attempts: int
) -> SentryRequestFailed:
    """A retryable failure for ``err``, or raise the final one for a fatal ``err``."""

    def fail(why: str) -> SentryRequestFailed:
        return SentryRequestFailed(
            f"failed to connect to Sentry at {address!r}: {why}", reason="sentry_conn"
        )

    if isinstance(err, TimeoutError):
        return fail(
            f"no answer within {timeout.total_seconds():g}s "
            f"({attempts} attempts); is sentry running and reachable?"
        )
    if isinstance(err, UntrustedChain):
        raise fail(
            f"Sentry's certificate does not verify against the trust anchors: "
            f"{err}; check that DAPR_TRUST_ANCHORS holds Sentry's CA"
        ) from err
    if isinstance(err, PeerRejected):
        raise fail(f"Sentry's certificate is not accepted: {err}") from err
    if isinstance(err, ssl.SSLCertVerificationError):
        raise fail(
            f"Sentry's certificate does not verify against the trust anchors: "
            f"{err.verify_message}; check that DAPR_TRUST_ANCHORS holds Sentry's CA"
        ) from err
    if isinstance(err, ssl.SSLError):
        raise fail(f"TLS handshake failed: {err.reason or err}") from err
    if isinstance(err, socket.gaierror):
        return fail(f"cannot resolve host {host!r}: {err.strerror}")
    if isinstance(err, ConnectionRefusedError):
        return fail("connection refused; is sentry running?")
    if isinstance(err, OSError):
        return fail(f"{os_reason(err)}; is sentry running?")
    if isinstance(err, (StreamTerminatedError, ProtocolError)):
        return fail(f"{err}; is sentry running?")
    if isinstance(err, WireError):
        raise SentryRequestFailed(
            f"invalid response from Sentry: SignCertificateResponse does not parse: {err}",
            reason="sign",
        ) from err
    raise err


def os_reason(err: OSError) -> str:
    """``connection reset``-style text for an OS error."""
    if err.errno is not None and err.errno in errno.errorcode:
        return (err.strerror or errno.errorcode[err.errno]).lower()
    return str(err) or type(err).__name__
