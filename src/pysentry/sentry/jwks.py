"""The ``jwks`` validator (spec §7.6): callers prove who they are with a JWT signed by a JWKS key.

Options come from ``spec.mtls.tokenValidators[].options``: ``source`` (an http(s) URL, a path to a
local file, or inline JWKS JSON, optionally base64), ``caCertificate`` (PEM or a path to one; the
only root trusted for HTTPS fetches), ``minRefreshInterval`` (default 10m) and ``requestTimeout``
(default 30s). URL sources are re-fetched every ``minRefreshInterval`` and file sources are watched;
a failed refresh keeps the last good key set.

Messages follow Dapr and lestrrat-go/jwx: ``token validation failed: "sub" not satisfied: values do
not match``, ``"aud" not satisfied``, ``"exp" not satisfied``, ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import watchfiles

from pysentry.config import parse_duration_or_seconds
from pysentry.errors import ConfigError, InvalidDuration, InvalidSpiffeId, RequestDenied
from pysentry.sentry.validators import SignRequest, TokenValidator, validate_common
from pysentry.spiffe import SpiffeId, TrustDomain

log = logging.getLogger(__name__)

DEFAULT_MIN_REFRESH_INTERVAL = timedelta(minutes=10)
DEFAULT_REQUEST_TIMEOUT = timedelta(seconds=30)
JWT_ACCEPTABLE_SKEW = timedelta(minutes=5)
_SOURCE_ERROR = (
    "failed to parse property 'location': not a URL, path to local file, or JSON value "
    "(optionally base64-encoded)"
)
_ALGS_BY_KTY: dict[str, tuple[str, ...]] = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "oct": ("HS256", "HS384", "HS512"),
}
_ALGS_BY_CRV = {
    "P-256": "ES256",
    "P-384": "ES384",
    "P-521": "ES512",
    "secp256k1": "ES256K",
    "Ed25519": "EdDSA",
}


def _duration(
    options: Mapping[str, str], name: str, default: timedelta, floor: timedelta
) -> timedelta:
    raw = str(options.get(name, "") or "")
    if not raw:
        return default
    try:
        value = parse_duration_or_seconds(raw)
    except InvalidDuration as err:
        raise ConfigError(f"jwks validator option {name!r}: {err}") from err
    return value if value > floor else default


@dataclass(frozen=True, slots=True)
class JwksOptions:
    source: str
    ca_certificate: str = ""
    min_refresh_interval: timedelta = DEFAULT_MIN_REFRESH_INTERVAL
    request_timeout: timedelta = DEFAULT_REQUEST_TIMEOUT

    @classmethod
    def from_map(cls, options: Mapping[str, str]) -> JwksOptions:
        source = str(options.get("source", "") or "")
        if not source:
            raise ConfigError("jwks validator: property 'location' must not be empty")
        return cls(
            source=source,
            ca_certificate=str(options.get("caCertificate", "") or ""),
            min_refresh_interval=_duration(
                options, "minRefreshInterval", DEFAULT_MIN_REFRESH_INTERVAL, timedelta(seconds=1)
            ),
            request_timeout=_duration(
                options, "requestTimeout", DEFAULT_REQUEST_TIMEOUT, timedelta(milliseconds=1)
            ),
        )


def parse_key_set(data: bytes | str, what: str) -> tuple[dict[str, Any], ...]:
    """The JWK dicts of a JWKS document; raises ValueError naming ``what`` if none is usable."""
    try:
        doc = json.loads(data)
        jwt.PyJWKSet.from_dict(doc)  # rejects sets without a usable key
    except (ValueError, jwt.PyJWTError, AttributeError) as err:
        raise ValueError(f"invalid JWKS from {what}: {err}") from err
    return tuple(k for k in doc["keys"] if isinstance(k, dict))


def _inline_key_set(source: str) -> tuple[dict[str, Any], ...] | None:
    candidates: list[bytes | str] = [source]
    try:
        padded = source.strip() + "=" * (-len(source.strip()) % 4)
        candidates.append(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        pass
    for candidate in candidates:
        try:
            return parse_key_set(candidate, "inline value")
        except ValueError:
            continue
    return None


def _is_file(source: str) -> bool:
    try:
        return Path(source).is_file()
    except (OSError, ValueError):  # e.g. inline JSON longer than a file name may be
        return False


def _allowed_algorithms(jwk: Mapping[str, Any]) -> tuple[str, ...]:
    if jwk.get("alg"):
        return (str(jwk["alg"]),)
    if jwk.get("kty") in _ALGS_BY_KTY:
        return _ALGS_BY_KTY[str(jwk["kty"])]
    crv = _ALGS_BY_CRV.get(str(jwk.get("crv", "P-256" if jwk.get("kty") == "EC" else "")))
    return (crv,) if crv else ()


def _claims_problem(err: jwt.PyJWTError) -> str:
    if isinstance(err, jwt.ExpiredSignatureError):
        return '"exp" not satisfied'
    if isinstance(err, jwt.ImmatureSignatureError):
        return '"nbf" not satisfied'
    if isinstance(err, jwt.InvalidIssuedAtError):
        return '"iat" not satisfied'
    if isinstance(err, jwt.InvalidAudienceError):
        return '"aud" not satisfied'
    if isinstance(err, jwt.MissingRequiredClaimError):
        return f'"{err.claim}" not satisfied'
    return str(err)


class JwksValidator:
    """Validates ``SignCertificateRequest.token`` against a JWKS (audience = Sentry's SPIFFE ID)."""

    def __init__(self, options: JwksOptions, sentry_id: str) -> None:
        self._options = options
        self._sentry_id = sentry_id
        self._keys: tuple[dict[str, Any], ...] | None = None
        self._url: str | None = None
        self._file: Path | None = None
        source = options.source
        if source.startswith(("https://", "http://")):
            self._url = source
            if source.startswith("http://"):
                log.warning(
                    "Loading JWK from an HTTP endpoint without TLS: this is not "
                    "recommended on production environments."
                )
        elif _is_file(source):
            self._file = Path(source)
        else:
            inline = _inline_key_set(source)
            if inline is None:
                raise ConfigError(f"jwks validator: {_SOURCE_ERROR}")
            self._keys = inline

    @property
    def kind(self) -> TokenValidator:
        return TokenValidator.JWKS

    @property
    def health_target(self) -> str | None:
        return "sentry-jwks-validator"

    def ready(self) -> bool:
        return self._keys is not None

    def _ssl_context(self) -> ssl.SSLContext:
        """System roots, or only ``caCertificate`` (PEM or a path) when it is set."""
        ca = self._options.ca_certificate
        if not ca:
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no system roots: this CA only
            ctx.load_verify_locations(cadata=ca if "-----BEGIN" in ca else Path(ca).read_text())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    async def _fetch(self) -> tuple[dict[str, Any], ...]:
        if self._file is not None:
            return parse_key_set(await asyncio.to_thread(self._file.read_bytes), str(self._file))
        assert self._url is not None
        timeout = aiohttp.ClientTimeout(total=self._options.request_timeout.total_seconds())
        ssl_arg: ssl.SSLContext | bool = (
            self._ssl_context() if self._url.startswith("https://") else False
        )
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self._url, ssl=ssl_arg) as resp,
        ):
            if resp.status != 200:
                raise ValueError(f"failed to fetch JWKS from {self._url!r}: HTTP {resp.status}")
            return parse_key_set(await resp.read(), self._url)

    async def start(self) -> None:
        """Fetch once; a failure is fatal at startup, as in Dapr."""
        if self._keys is not None:
            return
        try:
            self._keys = await self._fetch()
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as err:
            raise ConfigError(f"jwks validator: failed to load the JWKS: {err}") from err
        log.info("JWKS loaded from %s (%d keys)", self._url or self._file, len(self._keys))

    async def _refresh(self) -> None:
        try:
            self._keys = await self._fetch()
            log.debug("JWKS refreshed from %s", self._url or self._file)
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as err:
            log.warning("JWKS refresh failed, keeping the last good key set: %s", err)

    async def run(self) -> None:
        if self._file is not None:
            async for changes in watchfiles.awatch(self._file.parent, debounce=50):
                if any(Path(p).name == self._file.name for _, p in changes):
                    await self._refresh()
        elif self._url is not None:
            while True:
                await asyncio.sleep(self._options.min_refresh_interval.total_seconds())
                await self._refresh()

    async def validate(self, request: SignRequest) -> TrustDomain:
        if not request.token:
            raise RequestDenied("the request does not contain a token")
        keys = self._keys
        if keys is None:
            raise RequestDenied("jwks validator not ready")
        trust_domain = validate_common(request)
        try:
            subject = str(SpiffeId.for_app(trust_domain, request.namespace, request.app_id))
        except InvalidSpiffeId as err:
            raise RequestDenied(f"failed to construct SPIFFE ID for requestor: {err}") from err
        problem = self._verify(request.token, keys, subject)
        if problem is not None:
            raise RequestDenied(f"token validation failed: {problem}")
        return trust_domain

    def _verify(self, token: str, keys: tuple[dict[str, Any], ...], subject: str) -> str | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            return f"failed to parse token: {err}"
        alg, kid = header.get("alg"), header.get("kid")
        for jwk in keys:
            if kid is not None and jwk.get("kid") not in (None, kid):
                continue
            if alg not in _allowed_algorithms(jwk):
                continue
            try:
                key = jwt.PyJWK(jwk, algorithm=alg).key
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._sentry_id,
                    leeway=JWT_ACCEPTABLE_SKEW,
                    options={"require": ["aud"], "verify_sub": False},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as err:
                return _claims_problem(err)
            if claims.get("sub") != subject:
                return '"sub" not satisfied: values do not match'
            return None
        return "could not verify message using any of the signatures or keys"
