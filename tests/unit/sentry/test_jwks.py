"""The jwks validator: sources (inline, base64, file, http, https + caCertificate), checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from pysentry.errors import ConfigError, RequestDenied
from pysentry.sentry.jwks import JwksOptions, JwksValidator
from pysentry.sentry.validators import SignRequest
from pysentry.spiffe import TrustDomain
from pysentry.testing import TestCA

SENTRY_ID = "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
SUBJECT = "spiffe://public/ns/default/app"
KEY = ec.generate_private_key(ec.SECP256R1())


def jwks(*keys: Any, kid: str = "k1") -> dict[str, Any]:
    out = []
    for key in keys:
        algo = (
            jwt.algorithms.RSAAlgorithm
            if isinstance(key, rsa.RSAPrivateKey)
            else jwt.algorithms.ECAlgorithm
        )
        jwk = json.loads(algo.to_jwk(key.public_key()))
        jwk["kid"] = kid
        out.append(jwk)
    return {"keys": out}


def token(key: Any = KEY, alg: str = "ES256", kid: str | None = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": SUBJECT, "aud": SENTRY_ID, "iat": now, "exp": now + 300} | claims
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def req(tok: str, **kw: Any) -> SignRequest:
    return SignRequest("app", "default", b"csr", token=tok, **kw)


def validator(source: str, **options: str) -> JwksValidator:
    return JwksValidator(JwksOptions.from_map({"source": source, **options}), SENTRY_ID)


async def test_inline_json_and_base64_sources() -> None:
    doc = json.dumps(jwks(KEY))
    for source in (
        doc,
        base64.b64encode(doc.encode()).decode(),
        base64.b64encode(doc.encode()).decode().rstrip("="),
    ):
        v = validator(source)
        assert v.ready()
        assert await v.validate(req(token())) == TrustDomain("public")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source": ""}, "property 'location' must not be empty"),
        (
            {"source": "no such thing"},
            "failed to parse property 'location': not a URL, path to "
            "local file, or JSON value (optionally base64-encoded)",
        ),
        ({"source": "{}", "requestTimeout": "soon"}, "requestTimeout"),
    ],
    ids=["empty", "unparseable", "bad-duration"],
)
def test_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        JwksValidator(JwksOptions.from_map(options), SENTRY_ID)


def test_option_durations() -> None:
    opts = JwksOptions.from_map({"source": "x", "minRefreshInterval": "90", "requestTimeout": "1s"})
    assert opts.min_refresh_interval == timedelta(seconds=90)  # integer seconds fallback
    assert opts.request_timeout == timedelta(seconds=1)
    opts = JwksOptions.from_map({"source": "x", "minRefreshInterval": "500ms"})
    assert opts.min_refresh_interval == timedelta(minutes=10)  # not above 1s: default kept


async def test_token_checks() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    v = validator(json.dumps({"keys": jwks(KEY)["keys"] + jwks(rsa_key, kid="r1")["keys"]}))
    await v.validate(req(token(rsa_key, alg="RS256", kid="r1")))
    await v.validate(req(token(kid=None)))  # no kid: every key is tried
    await v.validate(req(token(), trust_domain="public"))
    now = int(time.time())
    cases = [
        (req(""), "the request does not contain a token"),
        (
            req(token(sub="spiffe://public/ns/default/other")),
            'token validation failed: "sub" not satisfied: values do not match',
        ),
        (
            req(token(), trust_domain="other.td"),
            'token validation failed: "sub" not satisfied: values do not match',
        ),
        (req(token(aud="someone-else")), 'token validation failed: "aud" not satisfied'),
        (req(token(aud=None)), 'token validation failed: "aud" not satisfied'),
        (req(token(exp=now - 400)), 'token validation failed: "exp" not satisfied'),
        (req(token(nbf=now + 400)), 'token validation failed: "nbf" not satisfied'),
        (
            req(token(other)),
            "token validation failed: could not verify message using any of the signatures or keys",
        ),
        (
            req(token(kid="unknown")),
            "token validation failed: could not verify message using any of the signatures or keys",
        ),
        (
            req(token("a-shared-secret-of-32-bytes-long!", alg="HS256")),
            "token validation failed: could not verify message using any of the signatures or keys",
        ),
    ]
    for request, message in cases:
        with pytest.raises(RequestDenied) as info:
            await v.validate(request)
        assert str(info.value) == message
    await v.validate(req(token(exp=now - 200)))  # inside the 5 minute skew


async def test_file_source_is_watched(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(KEY)))
    v = validator(str(path))
    assert not v.ready()
    await v.start()
    assert v.ready()
    await v.validate(req(token()))
    second = ec.generate_private_key(ec.SECP256R1())
    task = asyncio.create_task(v.run())
    try:
        await asyncio.sleep(0.2)
        path.write_text(json.dumps(jwks(second)))
        for _ in range(100):
            try:
                await v.validate(req(token(second)))
                break
            except RequestDenied:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the changed JWKS file was not reloaded")
        path.write_text("broken")  # a bad update keeps the last good key set
        await asyncio.sleep(0.3)
        await v.validate(req(token(second)))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def jwks_server(
    doc: dict[str, Any], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/jwks.json", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield int(port)
    finally:
        await runner.cleanup()


async def test_http_source_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with jwks_server(jwks(KEY)) as port:
        v = validator(f"http://127.0.0.1:{port}/jwks.json")
        await v.start()
    assert "Loading JWK from an HTTP endpoint without TLS" in caplog.text
    await v.validate(req(token()))
    with pytest.raises(ConfigError, match="failed to load the JWKS"):
        await validator(f"http://127.0.0.1:{port}/jwks.json", requestTimeout="1s").start()


async def test_https_source_with_ca_certificate(tmp_path: Path) -> None:
    ca = TestCA.create("example.org")
    chain, key = ca.issue_svid("spiffe://example.org/jwks", dns_names=["localhost"])
    (tmp_path / "srv.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain))
    (tmp_path / "srv.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    (tmp_path / "ca.pem").write_bytes(ca.anchors_pem())
    async with jwks_server(jwks(KEY), server_ctx) as port:
        url = f"https://localhost:{port}/jwks.json"
        for ca_option in (ca.anchors_pem().decode(), str(tmp_path / "ca.pem")):
            v = validator(url, caCertificate=ca_option)
            await v.start()
            await v.validate(req(token()))
        with pytest.raises(ConfigError, match="failed to load the JWKS"):
            await validator(url).start()  # system roots do not trust the test CA
