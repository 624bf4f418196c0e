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
without protobuf (:mod:`.sentry_wire`); callers get certificates. What the request holds and what
the response must pass are :mod:`.sentry_sign`'s.
Failures are :class:`SentryRequestFailed` (:mod:`.sentry_failure`), whose ``reason`` is daprd's
metric reason (``sentry_conn``, ``sign``, ``invalid_ts``) and whose ``status`` is Sentry's gRPC
status name when Sentry answered with an error.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from typing import TypeVar

from cryptography import x509
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from pysentry.clock import Clock, system_clock
from pysentry.pki.profiles import SENTRY_APP_ID as SENTRY_APP_ID  # public here too
from pysentry.pki.svid import Authorizer, authorize_id, authorize_path
from pysentry.security.backoff import (
    MAX_SHED_RETRIES,
    RETRY_BACKOFF,
    Random,
    retry_pause,
    shed_pause,
)
from pysentry.security.sentry_blocking import blocking_unary_call
from pysentry.security.sentry_failure import SentryRequestFailed, attempt_failure, sign_refused
from pysentry.security.sentry_sign import TokenValidator, check_response, sign_request
from pysentry.security.sentry_wire import (
    SIGN_CERTIFICATE,
    SignCertificateRequest,
    SignCertificateResponse,
)
from pysentry.security.tls import AnchorsLike, anchor_certs, client_context
from pysentry.spiffe import SpiffeId, TrustDomain, dapr_path

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
ATTEMPT_TIMEOUT = timedelta(seconds=3)
SHED_PATIENCE = MAX_ATTEMPTS * ATTEMPT_TIMEOUT
"""How long RESOURCE_EXHAUSTED is retried: as long as Dapr's attempts could last."""
_RETRYABLE = frozenset({Status.UNAVAILABLE, Status.RESOURCE_EXHAUSTED})

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
        request = sign_request(
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
        request = sign_request(
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

    async def _call_with_retries(
        self, request: SignCertificateRequest, attempt_once: Attempt, sleep: Sleep
    ) -> SignCertificateResponse:
        started = self._clock()
        attempt = sheds = 0
        while True:
            try:
                return await attempt_once(request)
            except GRPCError as err:
                failure = sign_refused(err)
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
                last = attempt_failure(
                    err,
                    address=self.address,
                    host=self.host,
                    timeout=self._timeout,
                    attempts=self._attempts,
                )
            sheds = 0
            attempt += 1
            log.debug("Sentry request attempt %d/%d failed: %s", attempt, self._attempts, last)
            if attempt >= self._attempts:
                raise last
            await sleep(retry_pause(self._rand, base=self._backoff))

    def _check_response(
        self,
        response: SignCertificateResponse,
        csr_pem: bytes,
        app_id: str,
        namespace: str,
        trust_domain: str,
    ) -> tuple[x509.Certificate, ...]:
        return check_response(
            response,
            csr_pem,
            app_id,
            namespace,
            trust_domain,
            anchors=self._anchors,
            clock=self._clock,
        )
