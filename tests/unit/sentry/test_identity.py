"""Sentry's serving SVID: issued in-process from the CA, switched for new handshakes only."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import timedelta

from cryptography import x509

from pysentry.clock import Clock, system_clock
from pysentry.pki.svid import id_from_cert
from pysentry.sentry.ca import CaSettings, CertificateAuthority
from pysentry.sentry.identity import ServingIdentity
from pysentry.sentry.monitoring import SentryMetrics
from pysentry.sentry.validators import TokenValidator
from pysentry.spiffe import TrustDomain
from pysentry.testing import TestCA


def client_context(anchors: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=anchors.decode())
    return ctx


async def served_cert(port: int, anchors: bytes) -> x509.Certificate:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(anchors))
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


def make_ca(
    test_ca: TestCA,
    ttl: timedelta = timedelta(hours=2),
    skew: timedelta = timedelta(minutes=1),
    clock: Clock = system_clock,
) -> CertificateAuthority:
    settings = CaSettings(
        TrustDomain("cluster.local"), "dapr-system", workload_ttl=ttl, clock_skew=skew
    )
    return CertificateAuthority(
        test_ca.bundle,
        settings,
        validators={},
        default_validator=TokenValidator.UNKNOWN,
        clock=clock,
    )


async def test_rotation_without_a_new_listener() -> None:
    first, second = TestCA.create("cluster.local"), TestCA.create("cluster.local")
    ca = make_ca(first)
    identity = ServingIdentity(ca)
    svid = await identity.start()
    assert str(svid.spiffe_id) == "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
    assert svid.lifetime == timedelta(hours=2, minutes=1)
    assert svid.chain[1:] == (first.cert,)

    async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=identity.listener_context)
    port = server.sockets[0].getsockname()[1]
    try:
        cert = await served_cert(port, first.anchors_pem())
        assert str(id_from_cert(cert)) == "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
        assert cert.issuer == first.cert.subject
        ca.swap(second.bundle)
        await identity.reissue()
        cert = await served_cert(port, second.anchors_pem())
        assert cert.issuer == second.cert.subject
        assert cert == identity.current().leaf
    finally:
        server.close()
        await server.wait_closed()


async def test_issue_failure_is_counted() -> None:
    now = [system_clock()]
    first = TestCA.create("cluster.local", ttl=timedelta(hours=1), now=now[0])
    ca = make_ca(first, clock=lambda: now[0])
    metrics = SentryMetrics()
    identity = ServingIdentity(ca, metrics=metrics, clock=lambda: now[0])
    await identity.start()
    ca.swap(TestCA.create("cluster.local", ttl=timedelta(minutes=1), now=now[0]).bundle)
    now[0] += timedelta(minutes=2)  # that issuer is now expired: Sentry refuses to sign with it
    with contextlib.suppress(Exception):
        await identity.reissue()
    assert metrics.servercert_failed._value.get() == 1
    assert identity.current().chain[1] == first.cert  # the old SVID stays in use


async def test_renewed_at_half_life_without_a_new_listener() -> None:
    ca = make_ca(TestCA.create("cluster.local"), ttl=timedelta(seconds=3), skew=timedelta(0))
    identity = ServingIdentity(ca)
    first = await identity.start()
    task = asyncio.create_task(identity.run())
    try:
        for _ in range(80):
            await asyncio.sleep(0.05)
            if identity.current() is not first:
                break
        second = identity.current()
        assert second is not first
        assert second.not_before >= first.renewal_at() - timedelta(seconds=1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
