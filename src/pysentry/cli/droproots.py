"""``dapr mtls drop-old-roots``: end a root change by removing the roots the issuer does not use.

The three items are read strictly and must load as Sentry loads them; only ``ca.crt`` is
rewritten, and only when some root goes: staged, then renamed, in a credentials directory; with
``-k`` in the cluster's Secret and ConfigMap ``dapr-trust-bundle`` (:mod:`pysentry.cli.kubedrop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from cryptography import x509

from pysentry.cli import console
from pysentry.cli.backend import Credentials
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


@dataclass(frozen=True, slots=True)
class Drop:
    """The roots that stay and go, and the new ``ca.crt``."""

    keep: tuple[x509.Certificate, ...]
    drop: tuple[x509.Certificate, ...]
    ca_pem: bytes


def plan_drop(data: Credentials, labels: dict[str, str], location: str) -> Drop | None:
    """What to drop from ``data`` (None, said on stdout, when every root signs the issuer).

    ``labels`` name the three items in messages; ``location`` names where they are.
    """
    ca_label = labels[CA_FILENAME]
    certificates(data.ca_pem, ca_label, only_certificates=True)
    certificates(data.issuer_pem, labels[ISSUER_CERT_FILENAME])
    private_key(data.key_pem, labels[ISSUER_KEY_FILENAME])
    now = system_clock()
    try:
        bundle = CaBundle.from_pem(data.ca_pem, data.issuer_pem, data.key_pem, now=now)
    except InvalidBundle as err:
        raise CliError(
            f"cannot drop old roots: the credentials in {location} do not load, "
            f"{UNCHANGED}; fix them first ('dapr mtls check' shows every problem):\n{err}"
        ) from err
    keep, drop = split_roots(bundle)
    if not drop:
        console.info(f"Nothing to drop: every root in {ca_label} signs the current issuer")
        return None
    if scan(data.ca_pem, ca_label).stray_text:
        console.warning(f"{ca_label}: the text outside its PEM blocks is not kept in the new file")
    new_ca = dump_certificates(keep)
    CaBundle.from_pem(new_ca, data.issuer_pem, data.key_pem, now=now)
    return Drop(tuple(keep), tuple(drop), new_ca)


def report_drop(plan: Drop) -> None:
    for anchor in plan.drop:
        console.info(f"Dropped {describe_root(anchor, 'expires')}")
    console.success(f"{CA_FILENAME} now holds {len(plan.keep)} root(s)")


def drop_old_roots_command(
    ctx: typer.Context,
    issuer_credentials: CredentialsOption = None,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            "-k",
            help="Drop them from the dapr-trust-bundle Secret and ConfigMap of a Kubernetes "
            "cluster",
        ),
    ] = False,
) -> None:
    """Remove roots the current issuer does not chain to from ca.crt (ends a root change)."""
    if kubernetes:
        if issuer_credentials is not None:
            raise CliError(
                "--issuer-credentials is for self-hosted mode; with -k the credentials are the "
                "cluster's Secret dapr-trust-bundle"
            )
        from pysentry.cli.kubedrop import drop_in_cluster  # aiohttp: load only for -k

        drop_in_cluster()
        return
    creds = credentials_of(ctx, issuer_credentials)
    data = creds.read()
    labels = {name: creds.label(name) for name in (CA_FILENAME, ISSUER_CERT_FILENAME)}
    labels[ISSUER_KEY_FILENAME] = creds.label(ISSUER_KEY_FILENAME)
    plan = plan_drop(data, labels, repr(creds.location))
    if plan is None:
        return
    try:
        creds.write_anchors(plan.ca_pem)
    except OSError as err:
        raise CliError(f"cannot write {labels[CA_FILENAME]}: {err.strerror}; {UNCHANGED}") from err
    report_drop(plan)
