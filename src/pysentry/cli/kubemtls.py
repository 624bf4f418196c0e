"""``dapr mtls -k``, ``dapr mtls expiry`` and ``dapr mtls export`` against a Kubernetes cluster.

What they read and print is Dapr's (spec A.2-A.4, ``cli:pkg/kubernetes/mtls.go``): the
``daprsystem`` Configuration's ``spec.mtls.enabled``, and the Secret ``dapr-trust-bundle`` of its
namespace. Errors carry Dapr's prefixes (``error checking mTLS: …``, ``error getting root cert
expiry: …``, ``error exporting trust chain certs: …``) and, as every pysentry command, exit 1.
``export`` checks the Secret's three values and writes them as the self-hosted export does
(:func:`pysentry.cli.export.export_credentials`: 0600 files, a 0700 directory when it creates one,
nothing written when a check fails).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pysentry.cli import cluster, console, trustbundle
from pysentry.cli.backend import Credentials
from pysentry.cli.console import CliError
from pysentry.cli.export import export_credentials
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.errors import InvalidKey
from pysentry.kube.client import JsonObject, KubeClient
from pysentry.pki.keys import load_private_key
from pysentry.pki.pem import PemError, scan_pem, strict_certificates

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """One command's event loop."""
    return asyncio.run(coro)


def mtls_enabled(config: JsonObject) -> bool:
    """``spec.mtls.enabled``; unset counts as enabled (the injector's and Sentry's default; Dapr's
    CLI would dereference a nil pointer)."""
    return ((config.get("spec") or {}).get("mtls") or {}).get("enabled", True) is not False


@contextlib.asynccontextmanager
async def _prefixed(prefix: str) -> AsyncIterator[KubeClient]:
    """A client for the cluster; every :class:`CliError` of connecting and of the body gets
    Dapr's ``<prefix>: `` in front (the expiry check after the body never raises one)."""
    try:
        kube = await cluster.connect()
    except CliError as err:
        raise CliError(f"{prefix}: {err}") from err
    async with kube:
        try:
            yield kube
        except CliError as err:
            raise CliError(f"{prefix}: {err}") from err


async def mtls_status() -> None:
    async with _prefixed("error checking mTLS") as kube:
        config = await cluster.system_config(kube)
        state = "enabled" if mtls_enabled(config) else "disabled"
        print(f"Mutual TLS is {state} in your Kubernetes cluster ", flush=True)
        await trustbundle.check_for_cert_expiry(kube, system_clock())


async def expiry() -> None:
    async with _prefixed("error getting root cert expiry") as kube:
        not_after = await trustbundle.root_expiry(kube)
    hours = console.hours_until(not_after, system_clock())
    print(f"Root certificate expires in {hours} hours. Expiry date: {console.go_time(not_after)}")


def _secret_credentials(bundle: trustbundle.TrustBundle) -> Credentials:
    """The Secret's three values, each whole and parsed (the key's match with the issuer is
    :func:`export_credentials`' check); a missing one is an error (Dapr writes an empty file)."""
    names = (CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME)
    missing = [name for name in names if name not in bundle.secret]
    if missing:
        raise CliError(
            f"Secret {f'{bundle.namespace}/{trustbundle.TRUST_BUNDLE}'!r} has no "
            f"{' or '.join(repr(m) for m in missing)}: Sentry has not filled the trust bundle "
            "yet; try again in a few minutes, or install certificates with "
            "'dapr mtls renew-certificate -k'"
        )
    for name in (CA_FILENAME, ISSUER_CERT_FILENAME):
        try:
            strict_certificates(bundle.secret[name], "value")
        except PemError as err:
            raise CliError(f"{bundle.label(name)}: {err.problem}; {trustbundle.RENEW_FIX}") from err
    try:
        scan_pem(bundle.secret[ISSUER_KEY_FILENAME], "value")
        load_private_key(bundle.secret[ISSUER_KEY_FILENAME])
    except PemError as err:
        raise CliError(
            f"{bundle.label(ISSUER_KEY_FILENAME)}: {err.problem}; {trustbundle.RENEW_FIX}"
        ) from err
    except InvalidKey as err:
        raise CliError(
            f"{bundle.label(ISSUER_KEY_FILENAME)}: {err}; {trustbundle.RENEW_FIX}"
        ) from err
    return Credentials(
        ca_pem=bundle.secret[CA_FILENAME],
        issuer_pem=bundle.secret[ISSUER_CERT_FILENAME],
        key_pem=bundle.secret[ISSUER_KEY_FILENAME],
    )


async def export(target: Path) -> None:
    async with _prefixed("error exporting trust chain certs") as kube:
        namespace = await cluster.control_plane_namespace(kube)
        bundle = await trustbundle.trust_bundle(kube, namespace, configmap=False)
        replaced = export_credentials(_secret_credentials(bundle), bundle.label, target)
        if replaced:
            console.info(f"Replaced the existing {', '.join(replaced)} in {target}")
        console.success(f"Trust certs successfully exported to {target}")
        await trustbundle.check_for_cert_expiry(kube, system_clock())
