"""``dapr mtls check``: a health report on the CA credentials, as a rich table.

Rows: the three files parse; anchors are self-signed; the issuer chain is signed by an anchor; the
issuer key matches; Sentry would load the bundle (``CaBundle.from_pem``); expiry horizons (90, 30,
7, 1 days) for every root and the issuer; leaves cannot outlive the issuer (workloadCertTTL); and,
with a reachable Sentry, that it signs under this bundle. Exit code 1 when any row FAILs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

import typer
from cryptography import x509
from rich.table import Table

from pysentry.cli import console
from pysentry.cli.backend import Credentials
from pysentry.cli.configfile import read_mtls
from pysentry.cli.console import CliError
from pysentry.cli.findings import Finding, Status
from pysentry.cli.home import DEFAULT_SENTRY_ADDRESS, DaprHome
from pysentry.cli.mtls import ConfigOption, CredentialsOption, credentials_of
from pysentry.cli.pemfile import certificates, private_key
from pysentry.cli.sentryprobe import probe_sentry
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME, ISSUER_CERT_FILENAME, ISSUER_KEY_FILENAME
from pysentry.errors import InvalidBundle
from pysentry.pki.bundle import CaBundle
from pysentry.pki.chain import check_signature_from
from pysentry.pki.keys import same_public_key
from pysentry.pki.pem import is_self_signed
from pysentry.pki.profiles import DEFAULT_CLOCK_SKEW

HORIZONS = (timedelta(days=90), timedelta(days=30), timedelta(days=7), timedelta(days=1))


def _parse(pem: bytes, file: str, out: list[Finding]) -> tuple[x509.Certificate, ...]:
    try:
        certs = certificates(pem, file)
    except CliError as err:
        out.append(Finding(f"{file} parses", Status.FAIL, str(err).removeprefix(f"{file}: ")))
        return ()
    out.append(Finding(f"{file} parses", Status.OK, f"{len(certs)} certificate(s)"))
    return certs


def expiry_finding(label: str, not_after: datetime, now: datetime) -> Finding:
    left = not_after - now
    date = console.rfc1123(not_after)
    check = f"{label} expiry"
    if left <= timedelta(0):
        return Finding(check, Status.FAIL, f"expired on {date}")
    days = console.days_until(not_after, now)
    text = (
        f"expires in {days} days ({date})"
        if days
        else f"expires in {console.hours_until(not_after, now)} hours ({date})"
    )
    if left <= HORIZONS[3]:
        return Finding(check, Status.FAIL, text + ": renew now")
    if left <= HORIZONS[2]:
        return Finding(check, Status.WARN, text + ": within 7 days, renew now")
    if left <= HORIZONS[1]:
        return Finding(check, Status.WARN, text + ": within 30 days, plan the renewal")
    if left <= HORIZONS[0]:
        return Finding(check, Status.NOTE, text + ": within 90 days")
    return Finding(check, Status.OK, text)


def _signatures(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> Finding:
    name = f"issuer chain signed by {CA_FILENAME}"
    try:
        for child, parent in itertools.pairwise(chain):
            check_signature_from(child, parent)
    except ValueError as err:
        return Finding(name, Status.FAIL, f"{ISSUER_CERT_FILENAME} is not a chain: {err}")
    top = chain[-1]
    errors = []
    for anchor in anchors:
        try:
            check_signature_from(top, anchor)
        except ValueError as err:
            errors.append(str(err))
        else:
            return Finding(
                name, Status.OK, f"signed by {anchor.subject.rfc4514_string() or '<empty>'}"
            )
    why = "; ".join(errors)
    return Finding(name, Status.FAIL, f"no root in {CA_FILENAME} signed the issuer: {why}")


def renewal_finding(workload_ttl: timedelta, clock_skew: timedelta) -> Finding:
    """Leaves are backdated by the skew and renewed at half their window: TTL <= skew loops."""
    name = "renewal after issuance"
    first = (workload_ttl - clock_skew) / 2
    if first <= timedelta(0):
        return Finding(
            name,
            Status.WARN,
            f"workloadCertTTL {_fmt(workload_ttl)} <= allowedClockSkew "
            f"{_fmt(clock_skew)}: a certificate is due for renewal as soon as it is issued",
        )
    return Finding(name, Status.OK, f"sidecars renew {_fmt(first)} after issuance")


def evaluate(
    creds: Credentials,
    *,
    now: datetime,
    workload_ttl: timedelta,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> list[Finding]:
    """Every offline check, in report order."""
    out: list[Finding] = []
    anchors = _parse(creds.ca_pem, CA_FILENAME, out)
    chain = _parse(creds.issuer_pem, ISSUER_CERT_FILENAME, out)
    chain = tuple(c for c in chain if not (len(chain) > 1 and is_self_signed(c)))
    try:
        key = private_key(creds.key_pem, ISSUER_KEY_FILENAME)
    except CliError as err:
        key = None
        why = str(err).removeprefix(f"{ISSUER_KEY_FILENAME}: ")
        out.append(Finding(f"{ISSUER_KEY_FILENAME} parses", Status.FAIL, why))
    else:
        kind = type(key).__name__.lstrip("_")
        out.append(Finding(f"{ISSUER_KEY_FILENAME} parses", Status.OK, kind))
    if anchors:
        bad = [a for a in anchors if not is_self_signed(a)]
        out.append(
            Finding(
                "roots are self-signed",
                Status.FAIL if bad else Status.OK,
                f"{len(bad)} of {len(anchors)} not self-signed"
                if bad
                else f"{len(anchors)} root(s)",
            )
        )
    if chain and anchors:
        out.append(_signatures(chain, anchors))
    if chain and key is not None:
        match = same_public_key(key.public_key(), chain[0].public_key())
        out.append(
            Finding(
                f"issuer key matches {ISSUER_CERT_FILENAME}",
                Status.OK if match else Status.FAIL,
                "same public key" if match else "issuer key does not match issuer certificate",
            )
        )
    try:
        CaBundle.from_pem(creds.ca_pem, creds.issuer_pem, creds.key_pem, now=now)
    except InvalidBundle as err:
        out.append(Finding("Sentry accepts the bundle", Status.FAIL, str(err)))
    else:
        out.append(
            Finding(
                "Sentry accepts the bundle",
                Status.OK,
                "CaBundle.from_pem passes at the current time",
            )
        )
    for index, anchor in enumerate(anchors):
        label = "root" if len(anchors) == 1 else f"root #{index + 1}"
        out.append(expiry_finding(label, anchor.not_valid_after_utc, now))
    if chain:
        issuer_end = chain[0].not_valid_after_utc
        out.append(expiry_finding("issuer", issuer_end, now))
        if anchors and issuer_end > max(a.not_valid_after_utc for a in anchors):
            out.append(
                Finding(
                    "issuer within root validity",
                    Status.WARN,
                    "the issuer outlives every root: chains stop verifying when the root expires",
                )
            )
        left = issuer_end - now
        name = "leaves fit in the issuer"
        if left >= workload_ttl:
            out.append(
                Finding(
                    name, Status.OK, f"a {_fmt(workload_ttl)} workload cert ends before the issuer"
                )
            )
        else:
            status = Status.FAIL if left <= timedelta(0) else Status.WARN
            out.append(
                Finding(
                    name,
                    status,
                    f"the issuer has {_fmt(max(left, timedelta(0)))} left, less than "
                    f"workloadCertTTL {_fmt(workload_ttl)}: new leaves are cut short to the "
                    "issuer's NotAfter",
                )
            )
    out.append(renewal_finding(workload_ttl, clock_skew))
    return out


def _fmt(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds < 3600:
        return f"{seconds / 60:.0f}m" if seconds >= 120 else f"{seconds:.0f}s"
    hours = seconds / 3600
    return f"{hours / 24:.0f}d" if hours >= 48 else f"{hours:.1f}h"


def render(findings: Sequence[Finding], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("CHECK")
    table.add_column("STATUS")
    table.add_column("DETAIL", overflow="fold")
    colours = {
        Status.OK: "green",
        Status.NOTE: "cyan",
        Status.WARN: "yellow",
        Status.FAIL: "bold red",
        Status.SKIP: "dim",
    }
    for finding in findings:
        table.add_row(
            finding.check, f"[{colours[finding.status]}]{finding.status}[/]", finding.detail
        )
    console.table_console().print(table)


def check_command(
    ctx: typer.Context,
    issuer_credentials: CredentialsOption = None,
    config: ConfigOption = None,
    sentry_address: Annotated[
        str | None,
        typer.Option(
            "--sentry-address",
            help="Check that this Sentry signs under the bundle "
            "(default: localhost:50001 when something listens there).",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not contact Sentry; check the files only.")
    ] = False,
) -> None:
    """Health report on the CA credentials; exits 1 if any check fails."""
    creds = credentials_of(ctx, issuer_credentials)
    home: DaprHome = ctx.find_root().obj
    settings = read_mtls((config or home.config_file).expanduser(), required=config is not None)
    now = system_clock()
    data = creds.read()
    findings = evaluate(
        data,
        now=now,
        workload_ttl=settings.workload_cert_ttl,
        clock_skew=settings.allowed_clock_skew,
    )
    address = sentry_address or settings.sentry_address or DEFAULT_SENTRY_ADDRESS
    if not offline:
        findings.append(probe_sentry(address, data, explicit=sentry_address is not None, now=now))
    render(findings, f"mTLS credentials in {creds.location}")
    failed = [f for f in findings if f.status == Status.FAIL]
    if failed:
        raise console.CliError(
            f"{len(failed)} check(s) failed: " + ", ".join(f.check for f in failed)
        )
    console.success("All checks passed")
