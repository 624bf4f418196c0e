"""``dapr mtls drop-old-roots``: end a root change by removing the roots the issuer does not use.

The three files are read strictly and must load as Sentry loads them; only ``ca.crt`` is
rewritten (staged, then renamed), and only when some root goes.
"""

from __future__ import annotations

import typer

from pysentry.cli import console
from pysentry.cli.chainview import describe_root
from pysentry.cli.console import CliError
from pysentry.cli.mtls import CredentialsOption, credentials_of
from pysentry.cli.pemfile import certificates, private_key, scan
from pysentry.cli.rotation import split_roots
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.errors import InvalidBundle
from pysentry.pki.bundle import CaBundle
from pysentry.pki.pem import dump_certificates

UNCHANGED = "nothing was changed"


def drop_old_roots_command(
    ctx: typer.Context, issuer_credentials: CredentialsOption = None
) -> None:
    """Remove roots the current issuer does not chain to from ca.crt (ends a root change)."""
    creds = credentials_of(ctx, issuer_credentials)
    data = creds.read()
    ca_label = creds.label(CA_FILENAME)
    certificates(data.ca_pem, ca_label, only_certificates=True)
    certificates(data.issuer_pem, creds.label(ISSUER_CERT_FILENAME))
    private_key(data.key_pem, creds.label(ISSUER_KEY_FILENAME))
    now = system_clock()
    try:
        bundle = CaBundle.from_pem(data.ca_pem, data.issuer_pem, data.key_pem, now=now)
    except InvalidBundle as err:
        raise CliError(
            f"cannot drop old roots: the credentials in {creds.location!r} do not load, "
            f"{UNCHANGED}; fix them first ('dapr mtls check' shows every problem):\n{err}"
        ) from err
    keep, drop = split_roots(bundle)
    if not drop:
        console.info(f"Nothing to drop: every root in {ca_label} signs the current issuer")
        return
    if scan(data.ca_pem, ca_label).stray_text:
        console.warning(f"{ca_label}: the text outside its PEM blocks is not kept in the new file")
    new_ca = dump_certificates(keep)
    CaBundle.from_pem(new_ca, data.issuer_pem, data.key_pem, now=now)
    try:
        creds.write_anchors(new_ca)
    except OSError as err:
        raise CliError(f"cannot write {ca_label}: {err.strerror}; {UNCHANGED}") from err
    for anchor in drop:
        console.info(f"Dropped {describe_root(anchor, 'expires')}")
    console.success(f"{CA_FILENAME} now holds {len(keep)} root(s)")
