"""``dapr mtls renew-certificate`` (§A.5); self-hosted here, ``-k`` in ``cli.kuberenew``.

Path selection follows Dapr: provided certificates if any of the three cert flags is set, else
``--private-key``, else fresh certificates. Differences, on purpose:

* every input is read strictly (:mod:`pysentry.cli.pemfile`: a damaged or unreadable file is an
  error naming it, by its flag for a passed file) and validated (``CaBundle.from_pem``) before a
  byte is written; the files are staged, then renamed (0600) into the directory Sentry watches;
* with ``--private-key`` a root in ``ca.crt`` with the same key is re-issued with the same subject
  and extensions (only serial and validity change), so running sidecars keep verifying;
* with a new root key the old roots stay in ``ca.crt`` next to the new one, and the command prints
  the next steps (restart sidecars, later ``dapr mtls drop-old-roots``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer
from cryptography import x509

from pysentry.cli import console
from pysentry.cli.backend import SelfHostedCredentials
from pysentry.cli.chainview import describe_root
from pysentry.cli.configfile import read_mtls
from pysentry.cli.console import CliError
from pysentry.cli.home import DaprHome
from pysentry.cli.mtls import ConfigOption, CredentialsOption, credentials_of
from pysentry.cli.pemfile import certificates, read_regular
from pysentry.cli.renewinputs import (
    RenewInputs,
    current_anchors,
    read_provided,
    renewal_for,
    select_inputs,
)
from pysentry.cli.rotation import Renewal
from pysentry.cli.staging import PartiallyWritten
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME
from pysentry.errors import PysentryError

UNCHANGED = "nothing was changed"


def _current_anchors(creds: SelfHostedCredentials) -> tuple[x509.Certificate, ...]:
    if not creds.has(CA_FILENAME):
        return ()
    label = creds.label(CA_FILENAME)
    return current_anchors(read_regular(creds.path(CA_FILENAME), label), label)


def renew_command(
    ctx: typer.Context,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            "-k",
            help="Renews root and issuer certificates of Dapr in a Kubernetes cluster",
        ),
    ] = False,
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
        bool, typer.Option("--restart", help="Restart Dapr control plane services")
    ] = False,
    timeout: Annotated[
        int, typer.Option("--timeout", min=1, help="The timeout for the certificate renewal")
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
            help="Trust domain of the CA (default: the renewed root's SPIFFE URI SAN or "
            "subject O; cluster.local for a new root)",
        ),
    ] = None,
    issuer_credentials: CredentialsOption = None,
    config: ConfigOption = None,
) -> None:
    """Rotates the root and issuer certificates: with -k in the cluster's dapr-trust-bundle,
    else in the credentials directory Sentry watches."""
    console.pending("Starting certificate rotation")
    try:
        if image_variant not in ("", "mariner"):
            raise CliError(f"image variant {image_variant} is not supported")
        if kubernetes and (issuer_credentials is not None or config is not None):
            flag = "--issuer-credentials" if issuer_credentials is not None else "--config"
            raise CliError(
                f"{flag} is for self-hosted mode; with -k the credentials are the cluster's "
                "Secret dapr-trust-bundle and the clock skew its Configuration daprsystem"
            )
        inputs = select_inputs(
            ca_root_certificate=ca_root_certificate,
            issuer_private_key=issuer_private_key,
            issuer_public_certificate=issuer_public_certificate,
            private_key=private_key,
            valid_until_days=valid_until,
            trust_domain=trust_domain,
            kubernetes=kubernetes,
        )
    except (CliError, PysentryError) as err:
        raise CliError(f"certificate rotation failed: {err}; {UNCHANGED}") from err
    if kubernetes:
        from pysentry.cli.kuberenew import renew_in_cluster  # aiohttp: load only for -k

        renew_in_cluster(inputs, timeout_s=timeout, restart=restart, image_variant=image_variant)
        return
    creds = credentials_of(ctx, issuer_credentials)
    home: DaprHome = ctx.find_root().obj
    try:
        now = system_clock()
        skew = timedelta(0)
        if inputs.generated:
            path = (config or home.config_file).expanduser()
            skew = read_mtls(path, required=config is not None).allowed_clock_skew
        renewal = renewal_for(inputs, _current_anchors(creds), now=now, skew=skew)
        console.info(f"Updating certificates in {creds.location}")
        creds.write(renewal.credentials)
    except (CliError, PysentryError) as err:
        raise CliError(f"certificate rotation failed: {err}; {UNCHANGED}") from err
    except PartiallyWritten as err:
        raise CliError(
            f"certificate rotation failed: writing to {creds.location!r} stopped after "
            f"{', '.join(err.replaced)}: {err.strerror}; fix the cause and run the command again"
        ) from err
    except OSError as err:
        raise CliError(
            f"certificate rotation failed: cannot write to {creds.location!r}: {err.strerror}; "
            f"{UNCHANGED}"
        ) from err
    console.success(
        "Certificate rotation is successful! Your new certificate is valid through "
        + console.rfc1123(renewal.root.not_valid_after_utc)
    )
    _next_steps(renewal, creds, restart)


def _provided(
    creds: SelfHostedCredentials, ca: str, key: str, cert: str, *, now: datetime
) -> Renewal:
    """Provided certificates for ``creds``, checked as ``renew-certificate`` checks them."""
    inputs = RenewInputs(read_provided(ca, key, cert), None, timedelta(0), None)
    return renewal_for(inputs, _current_anchors(creds), now=now, skew=timedelta(0))


def _next_steps(renewal: Renewal, creds: SelfHostedCredentials, restart: bool) -> None:
    for root in renewal.expired:
        console.info(f"Left out {describe_root(root, 'expired')}: it no longer verifies anything")
    console.info(f"Sentry watches {creds.location} and loads the new credentials without a restart")
    if renewal.first:
        console.info(f"New CA credentials: start Sentry with --issuer-credentials {creds.location}")
    elif renewal.root_key_changed:
        count = len(certificates(renewal.credentials.ca_pem, creds.label(CA_FILENAME)))
        console.warning(
            f"The root key changed. {CA_FILENAME} now holds {count} root(s), the new one first, so "
            "certificates under the old and the new root both verify wherever this bundle is "
            "loaded. New workload certificates are signed under the new root."
        )
        console.info(
            f"Next: sidecars started with 'dapr run' watch {CA_FILENAME} and trust the new root "
            "within seconds; restart any sidecar that got DAPR_TRUST_ANCHORS from its "
            "environment, or it rejects certificates signed under the new root."
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
