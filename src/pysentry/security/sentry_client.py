"""The Sentry client: ``SignCertificate`` over TLS, as daprd's ``pkg/security/sentry.go`` (§9.3).

Before the request (and its token) is sent, Sentry's certificate must chain to the trust anchors
(no hostname check) and carry Sentry's SPIFFE ID: exactly
``spiffe://<cp-td>/ns/<cp-ns>/dapr-sentry`` when a control-plane trust domain is given, else by
path ``/ns/<cp-ns>/dapr-sentry`` in any trust domain. Each attempt uses a new connection, closed
afterwards. Retries follow Dapr: 5 attempts, 3 s each, on UNAVAILABLE, timeouts and connection
errors, with a 50 ms (+-10%) pause. RESOURCE_EXHAUSTED (Sentry shedding load) is answered at once,
so it is retried apart from those: with exponential backoff and full jitter (:func:`shed_pause`),
for as long as Dapr's 5 attempts could last (15 s), so that sidecars started together spread their
retries and none gives up sooner than a Go sidecar would. The returned chain must verify against
the anchors, carry the requested identity and the CSR's key.

The call is made without grpclib's client (:mod:`.sentry_call`) and the messages are encoded
without protobuf (:mod:`.sentry_wire`); callers get certificates.
Failures are :class:`SentryRequestFailed`, whose ``reason`` is daprd's metric reason
(``sentry_conn``, ``sign``, ``invalid_ts``) and whose ``status`` is Sentry's gRPC status name when
Sentry answered with an error.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import TypeVar

from cryptography import x509
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from pysentry.clock import Clock, system_clock
from pysentry.errors import ConfigError, InvalidBundle, InvalidCsr, PeerRejected, SentryUnavailable
from pysentry.pki.csr import parse_csr
from pysentry.pki.keys import same_public_key
from pysentry.pki.pem import load_certificates
from pysentry.pki.profiles import SENTRY_APP_ID as SENTRY_APP_ID  # public here too
from pysentry.pki.svid import Authorizer, UntrustedChain, authorize_id, authorize_path, verify_svid
from pysentry.security.backoff import (
    MAX_SHED_RETRIES,
    RETRY_BACKOFF,
    Random,
    retry_pause,
    shed_pause,
)
from pysentry.security.sentry_blocking import blocking_unary_call
from pysentry.security.sentry_wire import (
    SIGN_CERTIFICATE,
    SignCertificateRequest,
    SignCertificateResponse,
    WireError,
)
from pysentry.security.tls import AnchorsLike, anchor_certs, client_context
from pysentry.spiffe import SpiffeId, TrustDomain, dapr_path

log = logging.getLogger(__name__)

CONTROL_PLANE_APP_IDS = frozenset(
    {"dapr-operator", "dapr-placement", "dapr-injector", SENTRY_APP_ID, "dapr-scheduler"}
)
MAX_ATTEMPTS = 5
ATTEMPT_TIMEOUT = timedelta(seconds=3)
SHED_PATIENCE = MAX_ATTEMPTS * ATTEMPT_TIMEOUT
"""How long RESOURCE_EXHAUSTED is retried: as long as Dapr's attempts could last."""
_RETRYABLE = frozenset({Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED})
_MIN_TS, _MAX_TS = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31 (CheckValid)

Attempt = Callable[["SignCertificateRequest"], Awaitable["SignCertificateResponse"]]
Sleep = Callable[[float], Awaitable[None]]


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # not before daprd's first certificate, which is requested without it

    await asyncio.sleep(seconds)


T = TypeVar("T")


def drive(coro: Coroutine[None, None, T]) -> T:
    """Run ``coro`` to its end on this thread, without an event loop: everything it awaits
    must finish without suspending (as the attempt and sleep of ``sign_blocking`` do)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("drive(): the coroutine suspended; it needs an event loop")


class TokenValidator(StrEnum):
    """``SignCertificateRequest.TokenValidator`` names; config names map by upper-casing."""

    UNKNOWN = "UNKNOWN"
    INSECURE = "INSECURE"
    KUBERNETES = "KUBERNETES"
    JWKS = "JWKS"


def parse_validator(name: TokenValidator | str) -> TokenValidator:
    """A validator name (any case, as in configuration) to the enum; ``ConfigError`` if unknown."""
    try:
        return TokenValidator(str(name).upper())
    except ValueError:
        choices = ", ".join(v.value.lower() for v in TokenValidator)
        raise ConfigError(f"unknown token validator {name!r}: use one of {choices}") from None


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


def sentry_authorizer(
    control_plane_trust_domain: str | None, control_plane_namespace: str
) -> Authorizer:
    """Sentry's ID, exactly when the control-plane trust domain is known, else by path."""
    if control_plane_trust_domain:
        return authorize_id(
            SpiffeId.for_app(
                TrustDomain.parse(control_plane_trust_domain),
                control_plane_namespace,
                SENTRY_APP_ID,
            )
        )
    return authorize_path(dapr_path(control_plane_namespace, SENTRY_APP_ID))


def request_trust_domain(
    app_id: str, namespace: str, control_plane_namespace: str, control_plane_trust_domain: str
) -> str:
    """``trust_domain`` is sent only for control-plane IDs in the control-plane namespace."""
    if app_id in CONTROL_PLANE_APP_IDS and namespace == control_plane_namespace:
        return control_plane_trust_domain
    return ""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (a ``dns:///`` prefix is accepted)."""
    text = address.removeprefix("dns:///")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SentryRequestFailed(
            f"invalid Sentry address {address!r}: expected host:port, e.g. localhost:50001",
            reason="sentry_conn",
        )
    return host, int(port)


class SentryClient:
    """Requests workload certificates from Sentry at ``address`` (``host:port``)."""

    def __init__(
        self,
        address: str,
        anchors: AnchorsLike,
        *,
        control_plane_trust_domain: str | None = None,
        control_plane_namespace: str = "default",
        clock: Clock = system_clock,
        sleep: Sleep = _asyncio_sleep,
        blocking_sleep: Callable[[float], None] = time.sleep,
        attempts: int = MAX_ATTEMPTS,
        attempt_timeout: timedelta = ATTEMPT_TIMEOUT,
        backoff: timedelta = RETRY_BACKOFF,
        shed_patience: timedelta = SHED_PATIENCE,
        rand: Random = random.random,
    ) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self._anchors = anchors
        self._authorizer = sentry_authorizer(control_plane_trust_domain, control_plane_namespace)
        self._clock = clock
        self._sleep = sleep
        self._blocking_sleep = blocking_sleep
        self._attempts = attempts
        self._timeout = attempt_timeout
        self._backoff = backoff
        self._shed_patience = shed_patience
        self._rand = rand
        self._context: tuple[tuple[x509.Certificate, ...], ssl.SSLContext] | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        anchors = anchor_certs(self._anchors)
        if self._context is None or self._context[0] is not anchors:
            # SpiffeChannel verifies Sentry's chain (go-spiffe rules) before the request.
            self._context = (anchors, client_context(None, anchors, verify_after_handshake=True))
        return self._context[1]

    def _request(
        self,
        csr_pem: bytes,
        app_id: str,
        namespace: str,
        token: str,
        validator: TokenValidator | str,
        trust_domain: str,
        jwt_audiences: Sequence[str],
    ) -> SignCertificateRequest:
        return SignCertificateRequest(
            id=app_id,
            token=token,
            trust_domain=trust_domain,
            namespace=namespace,
            certificate_signing_request=csr_pem,
            token_validator=parse_validator(validator).value,
            jwt_audiences=tuple(jwt_audiences),
        )

    async def sign(
        self,
        csr_pem: bytes,
        *,
        app_id: str,
        namespace: str,
        token: str = "",
        validator: TokenValidator | str = TokenValidator.UNKNOWN,
        trust_domain: str = "",
        jwt_audiences: Sequence[str] = (),
    ) -> tuple[x509.Certificate, ...]:
        """The signed chain (leaf first) for ``csr_pem``, after Dapr's retries."""
        request = self._request(
            csr_pem, app_id, namespace, token, validator, trust_domain, jwt_audiences
        )
        response = await self._call_with_retries(request, self._attempt, self._sleep)
        return self._check_response(response, csr_pem, app_id, namespace, trust_domain)

    def sign_blocking(
        self,
        csr_pem: bytes,
        *,
        app_id: str,
        namespace: str,
        token: str = "",
        validator: TokenValidator | str = TokenValidator.UNKNOWN,
        trust_domain: str = "",
        jwt_audiences: Sequence[str] = (),
    ) -> tuple[x509.Certificate, ...]:
        """:meth:`sign` on this thread with blocking sockets and sleeps, no event loop: the same
        request, retries, checks and errors (daprd's first certificate, before asyncio)."""
        request = self._request(
            csr_pem, app_id, namespace, token, validator, trust_domain, jwt_audiences
        )

        async def sleep(seconds: float) -> None:
            self._blocking_sleep(seconds)

        response = drive(self._call_with_retries(request, self._attempt_blocking, sleep))
        return self._check_response(response, csr_pem, app_id, namespace, trust_domain)

    async def _attempt(self, request: SignCertificateRequest) -> SignCertificateResponse:
        # Sentry's ID is checked before the request is sent; a new connection each time.
        import asyncio

        from pysentry.security.sentry_call import unary_call

        async with asyncio.timeout(self._timeout.total_seconds()):
            reply = await self._call(unary_call, request)
        return SignCertificateResponse.FromString(reply)

    async def _attempt_blocking(self, request: SignCertificateRequest) -> SignCertificateResponse:
        reply = self._call(blocking_unary_call, request)  # bounded by its timeout as a whole
        return SignCertificateResponse.FromString(reply)

    def _call(self, call: Callable[..., T], request: SignCertificateRequest) -> T:
        """``call`` (the asyncio or the blocking unary call) to Sentry's SignCertificate."""
        return call(
            self.host,
            self.port,
            SIGN_CERTIFICATE,
            request.SerializeToString(),
            context=self._ssl_context(),
            anchors=self._anchors,
            authorizer=self._authorizer,
            clock=self._clock,
            timeout=self._timeout.total_seconds(),
        )

    def _fail(self, why: str, *, reason: str = "sentry_conn") -> SentryRequestFailed:
        return SentryRequestFailed(
            f"failed to connect to Sentry at {self.address!r}: {why}", reason=reason
        )

    async def _call_with_retries(
        self, request: SignCertificateRequest, attempt_once: Attempt, sleep: Sleep
    ) -> SignCertificateResponse:
        started = self._clock()
        attempt = sheds = 0
        while True:
            try:
                return await attempt_once(request)
            except GRPCError as err:
                failure = SentryRequestFailed(
                    f"error from sentry SignCertificate: {rpc_error_text(err.status, err.message)}",
                    reason="sign",
                    status=err.status.name,
                )
                if err.status not in _RETRYABLE:
                    raise failure from err
                if err.status == Status.RESOURCE_EXHAUSTED:
                    sheds += 1
                    pause = shed_pause(sheds, self._rand)
                    waited = self._clock() - started + timedelta(seconds=pause)
                    if waited > self._shed_patience or sheds > MAX_SHED_RETRIES:
                        raise failure from err
                    log.debug("Sentry is shedding load, retrying in %.2fs: %s", pause, failure)
                    await sleep(pause)
                    continue
                last = failure
            except Exception as err:
                last = self._connect_failure(err)
            sheds = 0
            attempt += 1
            log.debug("Sentry request attempt %d/%d failed: %s", attempt, self._attempts, last)
            if attempt >= self._attempts:
                raise last
            await sleep(retry_pause(self._rand, base=self._backoff))

    def _connect_failure(self, err: Exception) -> SentryRequestFailed:
        """A retryable failure for ``err``, or raise the final one for a fatal ``err``."""
        if isinstance(err, TimeoutError):
            return self._fail(
                f"no answer within {self._timeout.total_seconds():g}s "
                f"({self._attempts} attempts); is sentry running and reachable?"
            )
        if isinstance(err, UntrustedChain):
            raise self._fail(
                f"Sentry's certificate does not verify against the trust anchors: "
                f"{err}; check that DAPR_TRUST_ANCHORS holds Sentry's CA"
            ) from err
        if isinstance(err, PeerRejected):
            raise self._fail(f"Sentry's certificate is not accepted: {err}") from err
        if isinstance(err, ssl.SSLCertVerificationError):
            raise self._fail(
                f"Sentry's certificate does not verify against the trust anchors: "
                f"{err.verify_message}; check that DAPR_TRUST_ANCHORS holds Sentry's CA"
            ) from err
        if isinstance(err, ssl.SSLError):
            raise self._fail(f"TLS handshake failed: {err.reason or err}") from err
        if isinstance(err, socket.gaierror):
            return self._fail(f"cannot resolve host {self.host!r}: {err.strerror}")
        if isinstance(err, ConnectionRefusedError):
            return self._fail("connection refused; is sentry running?")
        if isinstance(err, OSError):
            return self._fail(f"{os_reason(err)}; is sentry running?")
        if isinstance(err, (StreamTerminatedError, ProtocolError)):
            return self._fail(f"{err}; is sentry running?")
        if isinstance(err, WireError):
            raise SentryRequestFailed(
                f"invalid response from Sentry: SignCertificateResponse does not parse: {err}",
                reason="sign",
            ) from err
        raise err

    def _check_response(
        self,
        response: SignCertificateResponse,
        csr_pem: bytes,
        app_id: str,
        namespace: str,
        trust_domain: str,
    ) -> tuple[x509.Certificate, ...]:
        def invalid(why: str, reason: str = "sign") -> SentryRequestFailed:
            return SentryRequestFailed(f"invalid response from Sentry: {why}", reason=reason)

        ts = response.valid_until
        if ts is None:
            raise invalid("valid_until is missing", "invalid_ts")
        if not (_MIN_TS <= ts.seconds <= _MAX_TS and 0 <= ts.nanos < 1_000_000_000):
            raise invalid(f"valid_until {ts.seconds}s/{ts.nanos}ns is out of range", "invalid_ts")
        try:
            chain = load_certificates(response.workload_certificate)
        except InvalidBundle as err:
            raise invalid(f"workload_certificate: {err}") from err
        if not chain:
            raise invalid("workload_certificate holds no PEM certificate")
        expected: Authorizer = (
            authorize_id(SpiffeId.for_app(TrustDomain.parse(trust_domain), namespace, app_id))
            if trust_domain
            else authorize_path(dapr_path(namespace, app_id))
        )
        try:
            verify_svid(chain, anchor_certs(self._anchors), now=self._clock(), authorizer=expected)
        except PeerRejected as err:
            raise invalid(f"the signed certificate is not acceptable: {err}") from err
        try:
            requested = parse_csr(csr_pem)
        except InvalidCsr as err:
            raise invalid(f"our own CSR does not parse: {err}") from err
        if not same_public_key(chain[0].public_key(), requested):
            raise invalid("the signed certificate is not for the key of the CSR")
        return chain


def os_reason(err: OSError) -> str:
    """``connection reset``-style text for an OS error."""
    if err.errno is not None and err.errno in errno.errorcode:
        return (err.strerror or errno.errorcode[err.errno]).lower()
    return str(err) or type(err).__name__
