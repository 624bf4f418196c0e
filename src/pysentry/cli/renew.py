"""``dapr mtls renew-certificate`` (§A.5, self-hosted).

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

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from pysentry.cli import console
from pysentry.cli.backend import Credentials, SelfHostedCredentials
from pysentry.cli.chainview import describe_root
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
from pysentry.cli.pemfile import certificates, read_regular, scan
from pysentry.cli.pemfile import private_key as pem_private_key
from pysentry.cli.rotation import Renewal, generate, provided
from pysentry.cli.staging import PartiallyWritten
from pysentry.clock import system_clock
from pysentry.credentials import (
    CA_FILENAME,
    CREDENTIAL_FILENAMES,
    ISSUER_CERT_FILENAME,
    ISSUER_KEY_FILENAME,
)
from pysentry.errors import InvalidBundle, PysentryError
from pysentry.pki.keys import KeyAlgorithm, generate_key

ALL_FLAGS_MESSAGE = (
    'all required flags for this certificate rotation path, "ca-root-certificate", '
    '"issuer-private-key" and "issuer-public-certificate" are not present'
)


_NAMES = "|".join(re.escape(name) for name in CREDENTIAL_FILENAMES)
_FILE_AT_LINE_START = re.compile(rf"^({_NAMES}):", re.MULTILINE)
_FILE_WORD = re.compile(rf"(?<![\w./'-])({_NAMES})(?![\w-])")
UNCHANGED = "nothing was changed"


@dataclass(frozen=True, slots=True)
class _Given:
    """A file passed with a flag: its bytes and how messages name it."""

    flag: str
    path: Path
    data: bytes

    @property
    def label(self) -> str:
        return f"{self.flag} {str(self.path)!r}"

    @classmethod
    def read(cls, flag: str, value: str) -> _Given:
        path = Path(value).expanduser().absolute()  # absolute: never re-matched by _FILE_WORD
        return cls(flag, path, read_regular(path, f"{flag} {str(path)!r}"))


def _name_given_files(message: str, given: dict[str, _Given]) -> str:
    """Bundle problems name ``ca.crt`` etc.; say which passed file each one is about."""
    message = _FILE_AT_LINE_START.sub(lambda m: given[m.group(1)].label + ":", message)
    return _FILE_WORD.sub(lambda m: repr(str(given[m.group(1)].path)), message)


def _current_anchors(creds: SelfHostedCredentials) -> tuple[x509.Certificate, ...]:
    """The roots of the current ``ca.crt`` (none if it is missing); any damage is an error, so
    that a rewrite never drops a root this command could not read."""
    if not creds.has(CA_FILENAME):
        return ()
    label = creds.label(CA_FILENAME)
    data = read_regular(creds.path(CA_FILENAME), label)
    anchors = certificates(data, label, only_certificates=True)
    if scan(data, label).stray_text:
        console.warning(f"{label}: the text outside its PEM blocks is not kept in the new file")
    return anchors


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
            help="Trust domain of the CA (default: the renewed root's SPIFFE URI SAN or "
            "subject O; cluster.local for a new root)",
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
        given = (ca_root_certificate, issuer_private_key, issuer_public_certificate)
        if any(value is not None for value in given):
            if not all(value and value.strip() for value in given):
                raise CliError(ALL_FLAGS_MESSAGE)
            console.info("Using provided certificates")
            renewal = _provided(creds, *(str(value) for value in given), now=now)
        else:
            settings = read_mtls(
                (config or home.config_file).expanduser(), required=config is not None
            )
            ttl, skew = timedelta(days=valid_until), settings.allowed_clock_skew
            if private_key is not None:
                if not private_key.strip():
                    raise CliError('"privateKey" flag has incorrect value')
                console.info("Using the provided private key to generate the root certificate")
                key_file = _Given.read("--private-key", private_key)
                root_key = pem_private_key(key_file.data, key_file.label)
            else:
                console.info("generating fresh certificates")
                root_key = generate_key(KeyAlgorithm.EC_P256)
            renewal = generate(
                root_key,
                _current_anchors(creds),
                trust_domain=trust_domain,
                now=now,
                ttl=ttl,
                skew=skew,
            )
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
    files = {
        CA_FILENAME: _Given.read("--ca-root-certificate", ca),
        ISSUER_CERT_FILENAME: _Given.read("--issuer-public-certificate", cert),
        ISSUER_KEY_FILENAME: _Given.read("--issuer-private-key", key),
    }
    for name in (CA_FILENAME, ISSUER_CERT_FILENAME):
        certificates(files[name].data, files[name].label)
    pem_private_key(files[ISSUER_KEY_FILENAME].data, files[ISSUER_KEY_FILENAME].label)
    current = _current_anchors(creds)
    try:
        return provided(
            Credentials(*(files[name].data for name in CREDENTIAL_FILENAMES)),
            current,
            now=now,
        )
    except InvalidBundle as err:
        raise CliError(_name_given_files(str(err), files)) from err


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
