"""``dapr mtls renew-certificate`` (§A.5, self-hosted) and ``dapr mtls drop-old-roots``.

Path selection follows Dapr: provided certificates if any of the three cert flags is set, else
``--private-key``, else fresh certificates. Differences, on purpose:

* everything is validated (``CaBundle.from_pem``) before a byte is written, and the files are
  written atomically (0600) into the credentials directory Sentry watches;
* with ``--private-key`` a root in ``ca.crt`` with the same key is re-issued with the same subject
  and extensions (only serial and validity change), so running sidecars keep verifying;
* with a new root key the old roots stay in ``ca.crt`` next to the new one, and the command prints
  the next steps (restart sidecars, later ``dapr mtls drop-old-roots``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from pysentry.cli import console
from pysentry.cli.backend import Credentials, SelfHostedCredentials
from pysentry.cli.configfile import read_mtls
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.mtls import (
    ConfigOption,
    CredentialsOption,
    KubernetesOption,
    credentials_of,
    refuse_kubernetes,
)
from pysentry.cli.rotation import Renewal, generate, provided, split_roots
from pysentry.clock import system_clock
from pysentry.errors import PysentryError
from pysentry.pki.bundle import CaBundle
from pysentry.pki.keys import KeyAlgorithm, generate_key, load_private_key
from pysentry.pki.pem import dump_certificates, load_certificates

ALL_FLAGS_MESSAGE = (
    'all required flags for this certificate rotation path, "ca-root-certificate", '
    '"issuer-private-key" and "issuer-public-certificate" are not present'
)


def _read_given(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {what} {path!r}: {err.strerror}") from err


def _current_anchors(creds: SelfHostedCredentials) -> tuple[x509.Certificate, ...]:
    path = creds.path("ca.crt")
    try:
        return load_certificates(path.read_bytes()) if path.exists() else ()
    except (OSError, ValueError):
        return ()


def renew_command(
    ctx: typer.Context,
    kubernetes: KubernetesOption = False,
    private_key: Annotated[
        str | None,
        typer.Option(
            "--private-key", help="The root.key file which is used to generate root certificate"
        ),
    ] = None,
    ca_root_certificate: Annotated[
        str | None, typer.Option("--ca-root-certificate", help="The root certificate file")
    ] = None,
    issuer_private_key: Annotated[
        str | None, typer.Option("--issuer-private-key", help="The issuer certificate private key")
    ] = None,
    issuer_public_certificate: Annotated[
        str | None, typer.Option("--issuer-public-certificate", help="The issuer certificate")
    ] = None,
    valid_until: Annotated[
        int, typer.Option("--valid-until", min=1, help="Max days before certificate expires")
    ] = 365,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="Restart Dapr control plane services (self-hosted: prints what to do)"
        ),
    ] = False,
    timeout: Annotated[
        int,
        typer.Option(
            "--timeout", help="The timeout for the certificate renewal (unused in self-hosted mode)"
        ),
    ] = 300,
    image_variant: Annotated[
        str,
        typer.Option(
            "--image-variant",
            help="The image variant to use for the Dapr runtime, for example: mariner",
        ),
    ] = "",
    trust_domain: Annotated[
        str | None,
        typer.Option(
            "--trust-domain",
            help="Trust domain in a new root's subject (default: kept, or cluster.local)",
        ),
    ] = None,
    issuer_credentials: CredentialsOption = None,
    config: ConfigOption = None,
) -> None:
    """Rotates the root and issuer certificates in the credentials directory Sentry watches."""
    refuse_kubernetes(kubernetes)
    console.pending("Starting certificate rotation")
    creds = credentials_of(ctx, issuer_credentials)
    home: DaprHome = ctx.find_root().obj
    try:
        if image_variant not in ("", "mariner"):
            raise CliError(f"image variant {image_variant} is not supported")
        now = system_clock()
        current = _current_anchors(creds)
        given = (ca_root_certificate, issuer_private_key, issuer_public_certificate)
        if any(value is not None for value in given):
            if not all(value and value.strip() for value in given):
                raise CliError(ALL_FLAGS_MESSAGE)
            console.info("Using provided certificates")
            ca, key, cert = (str(value) for value in given)
            renewal = provided(
                Credentials(
                    ca_pem=_read_given(ca, "--ca-root-certificate"),
                    issuer_pem=_read_given(cert, "--issuer-public-certificate"),
                    key_pem=_read_given(key, "--issuer-private-key"),
                ),
                current,
                now=now,
            )
        else:
            settings = read_mtls(
                (config or home.config_file).expanduser(), required=config is not None
            )
            ttl, skew = timedelta(days=valid_until), settings.allowed_clock_skew
            if private_key is not None:
                if not private_key.strip():
                    raise CliError('"privateKey" flag has incorrect value')
                console.info("Using the provided private key to generate the root certificate")
                root_key = load_private_key(_read_given(private_key, "--private-key"))
            else:
                console.info("generating fresh certificates")
                root_key = generate_key(KeyAlgorithm.EC_P256)
            renewal = generate(
                root_key, current, trust_domain=trust_domain, now=now, ttl=ttl, skew=skew
            )
        console.info(f"Updating certificates in {creds.location}")
        creds.write(renewal.credentials)
    except CliError as err:
        raise CliError(f"certificate rotation failed: {err}") from err
    except PysentryError as err:
        raise CliError(f"certificate rotation failed: {err}") from err
    console.success(
        "Certificate rotation is successful! Your new certificate is valid through "
        + console.rfc1123(renewal.root.not_valid_after_utc)
    )
    _next_steps(renewal, creds, restart)


def _next_steps(renewal: Renewal, creds: SelfHostedCredentials, restart: bool) -> None:
    console.info(f"Sentry watches {creds.location} and loads the new credentials without a restart")
    if renewal.first:
        console.info(f"New CA credentials: start Sentry with --issuer-credentials {creds.location}")
    elif renewal.root_key_changed:
        count = 1 + len(renewal.old_roots)
        console.warning(
            f"The root key changed. ca.crt now holds {count} root(s), the new one first, so "
            "certificates under the old and the new root both verify wherever this bundle is "
            "loaded. New workload certificates are signed under the new root."
        )
        console.info(
            "Next: sidecars started with 'dapr run' watch ca.crt and trust the new root within "
            "seconds; restart any sidecar that got DAPR_TRUST_ANCHORS from its environment, or "
            "it rejects certificates signed under the new root."
        )
        console.info(
            "Then, once every sidecar has the new bundle and the old workload certificates have "
            "expired (workloadCertTTL, 24h by default), remove the old root with:\n"
            f"    dapr mtls drop-old-roots --issuer-credentials {creds.location}"
        )
    else:
        console.info(
            "The root key is unchanged: running sidecars keep trusting the new certificates"
        )
    if restart:
        console.info(
            "--restart: nothing to restart in self-hosted mode (no Kubernetes control plane); "
            "Sentry reloads the credentials directory by itself"
        )


def drop_old_roots_command(
    ctx: typer.Context, issuer_credentials: CredentialsOption = None
) -> None:
    """Remove roots the current issuer does not chain to from ca.crt (ends a root change)."""
    creds = credentials_of(ctx, issuer_credentials)
    data = creds.read()
    now = system_clock()
    keep, drop = split_roots(CaBundle.from_pem(data.ca_pem, data.issuer_pem, data.key_pem, now=now))
    if not drop:
        console.info(
            f"Nothing to drop: every root in {creds.path('ca.crt')} signs the current issuer"
        )
        return
    new_ca = dump_certificates(keep)
    CaBundle.from_pem(new_ca, data.issuer_pem, data.key_pem, now=now)
    creds.write(Credentials(new_ca, data.issuer_pem, data.key_pem))
    for anchor in drop:
        console.info(
            f"Dropped root {anchor.subject.rfc4514_string()} (serial {anchor.serial_number:x}, "
            f"expires {console.rfc1123(anchor.not_valid_after_utc)})"
        )
    console.success(f"ca.crt now holds {len(keep)} root(s)")
