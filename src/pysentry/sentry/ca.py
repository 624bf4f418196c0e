"""The signing core of Sentry: the request pipeline of spec §7.2, without protobuf or gRPC.

``CertificateAuthority.sign(request)`` runs, in Dapr's order: count the request, pick the validator
(``INVALID_ARGUMENT`` if none or not enabled), validate (``PERMISSION_DENIED``), parse the CSR and
check its proof of possession (``INVALID_ARGUMENT``), then sign (``INTERNAL``). Errors are
:class:`SignError` with a :class:`Code` and Dapr's exact message; ``server.py`` maps them to gRPC.

The current :class:`CaBundle` is swapped atomically by :meth:`CertificateAuthority.swap` on reload;
each request works on the bundle it started with, so in-flight requests are never mixed or dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pysentry.clock import Clock, system_clock
from pysentry.errors import InvalidCsr, InvalidSpiffeId, PysentryError, RequestDenied
from pysentry.pki.bundle import CaBundle, SignedLeaf
from pysentry.pki.csr import parse_csr
from pysentry.pki.keys import PublicKey
from pysentry.pki.profiles import DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL, SENTRY_APP_ID
from pysentry.sentry.monitoring import SentryMetrics
from pysentry.sentry.validators import SignRequest, TokenValidator, Validator
from pysentry.spiffe import SpiffeId, TrustDomain

log = logging.getLogger(__name__)


class Code(StrEnum):
    """The gRPC status codes the pipeline uses (names match ``grpclib.const.Status``)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    INTERNAL = "INTERNAL"


class SignError(PysentryError):
    """A SignCertificate failure with the status code and the message the client sees."""

    def __init__(self, code: Code, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.value}: {message}")


@dataclass(frozen=True, slots=True)
class SignedCertificate:
    """What SignCertificate returns: leaf + issuer chain (never the root), anchors, NotAfter."""

    chain_pem: bytes
    anchors_pem: bytes
    not_after: datetime
    spiffe_id: SpiffeId


@dataclass(frozen=True, slots=True)
class CaSettings:
    trust_domain: TrustDomain
    """Sentry's (control-plane) trust domain: ``--trust-domain``."""
    namespace: str
    """Sentry's namespace (``NAMESPACE``)."""
    workload_ttl: timedelta = DEFAULT_WORKLOAD_TTL
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    max_concurrent_signs: int = 64

    @property
    def sentry_id(self) -> SpiffeId:
        return SpiffeId.for_app(self.trust_domain, self.namespace, SENTRY_APP_ID)


def dns_names_for(app_id: str, namespace: str, settings: CaSettings) -> tuple[str, ...]:
    """Dapr's control-plane DNS SAN special cases (spec §6); standalone uses the trust domain."""
    if namespace != settings.namespace:
        return ()
    if app_id == "dapr-injector":
        return (f"dapr-sidecar-injector.{namespace}.svc",)
    if app_id == "dapr-operator":
        return (f"dapr-webhook.{namespace}.svc",)
    if app_id == "dapr-scheduler":
        tld = settings.trust_domain.name
        return tuple(
            f"dapr-scheduler-server-{i}.dapr-scheduler-server.{namespace}.svc.{tld}"
            for i in range(3)
        )
    return ()


class CertificateAuthority:
    """Signs workload SVIDs with the current bundle; the validators decide who may ask."""

    def __init__(
        self,
        bundle: CaBundle,
        settings: CaSettings,
        *,
        validators: Mapping[TokenValidator, Validator],
        default_validator: TokenValidator,
        metrics: SentryMetrics | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._bundle = bundle
        self._anchors_pem = bundle.anchors_pem()
        self.settings = settings
        self._validators = dict(validators)
        self._default_validator = default_validator
        self._metrics = metrics
        self._clock = clock
        self._clamp_warned = False
        self.swap_listeners: list[Callable[[CaBundle], None]] = []
        """Called with each new bundle, in the swap (``--workers``: it goes to every worker)."""

    @property
    def bundle(self) -> CaBundle:
        return self._bundle

    def swap(self, bundle: CaBundle) -> None:
        """Sign every later request with ``bundle`` (no await in between: atomic for requests)."""
        self._bundle, self._anchors_pem = bundle, bundle.anchors_pem()
        self._clamp_warned = False
        for listener in self.swap_listeners:
            listener(bundle)

    def count_refused(self) -> None:
        """A request refused before the pipeline (shed, unreadable): received and failed."""
        if self._metrics is not None:
            self._metrics.sign_request_received()
        self._failed()

    async def sign(self, request: SignRequest) -> SignedCertificate:
        if self._metrics is not None:
            self._metrics.sign_request_received()
        try:
            result = await self._pipeline(request)
        except BaseException:
            self._failed()
            raise
        if self._metrics is not None:
            self._metrics.sign_succeeded()
        return result

    def _failed(self) -> None:
        if self._metrics is not None:
            self._metrics.sign_failed()

    def _validator_for(self, request: SignRequest) -> Validator:
        kind = request.validator or self._default_validator
        if kind == TokenValidator.UNKNOWN:
            raise SignError(
                Code.INVALID_ARGUMENT, "a validator name must be specified in this environment"
            )
        try:
            validator = self._validators.get(TokenValidator(kind))
        except ValueError:  # out of the enum's range, e.g. -1
            validator = None
        if validator is None:
            raise SignError(Code.INVALID_ARGUMENT, "the requested validator is not enabled")
        return validator

    async def _pipeline(self, request: SignRequest) -> SignedCertificate:
        validator = self._validator_for(request)
        try:
            trust_domain = await validator.validate(request)
        except RequestDenied as err:
            log.debug("request denied: ns=%r app-id=%r: %s", request.namespace, request.app_id, err)
            raise SignError(Code.PERMISSION_DENIED, str(err)) from err
        try:
            public_key = parse_csr(request.csr_pem)
        except InvalidCsr as err:
            log.debug("invalid CSR: ns=%r app-id=%r: %s", request.namespace, request.app_id, err)
            raise SignError(Code.INVALID_ARGUMENT, str(err)) from err
        except Exception as err:  # any parser failure on the client's bytes is the client's
            log.debug("invalid CSR: ns=%r app-id=%r: %r", request.namespace, request.app_id, err)
            raise SignError(
                Code.INVALID_ARGUMENT, f"failed to parse certificate signing request: {err}"
            ) from err
        try:
            spiffe_id = SpiffeId.for_app(trust_domain, request.namespace, request.app_id)
        except InvalidSpiffeId as err:
            log.debug("cannot sign for ns=%r app-id=%r: %s", request.namespace, request.app_id, err)
            raise SignError(Code.INTERNAL, "failed to sign certificate") from err
        dns = dns_names_for(request.app_id, request.namespace, self.settings)
        bundle, anchors_pem = self._bundle, self._anchors_pem
        signed = self.sign_identity(public_key, spiffe_id, dns_names=dns, bundle=bundle)
        return SignedCertificate(
            chain_pem=signed.chain_pem,
            anchors_pem=anchors_pem,
            not_after=signed.leaf.not_valid_after_utc,
            spiffe_id=spiffe_id,
        )

    def sign_identity(
        self,
        public_key: PublicKey,
        spiffe_id: SpiffeId,
        *,
        dns_names: tuple[str, ...] = (),
        bundle: CaBundle | None = None,
    ) -> SignedLeaf:
        """Issue one SVID (also used for Sentry's own serving certificate)."""
        bundle = bundle or self._bundle
        now = self._clock()
        if now >= bundle.issuer_not_after:
            log.error(
                "Refusing to sign for %s: the issuer certificate expired at %s; install new "
                "issuer credentials",
                spiffe_id,
                bundle.issuer_not_after.isoformat(),
            )
            raise SignError(Code.INTERNAL, "failed to sign certificate")
        signed = bundle.sign(
            public_key,
            spiffe_id,
            now=now,
            ttl=self.settings.workload_ttl,
            skew=self.settings.clock_skew,
            dns_names=dns_names,
        )
        if signed.clamped and not self._clamp_warned:
            self._clamp_warned = True
            log.warning(
                "Workload certificates expire with the issuer certificate at %s, sooner than "
                "workloadCertTTL %s: renew the issuer",
                bundle.issuer_not_after.isoformat(),
                self.settings.workload_ttl,
            )
        return signed
