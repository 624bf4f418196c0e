"""What ``renew-certificate`` was asked for, read and checked, and the :class:`Renewal` it makes.

Both places the command writes to (a credentials directory, a cluster's ``dapr-trust-bundle``)
share this: Dapr's path selection (§A.5: provided certificates if any of the three cert flags is
set, else ``--private-key``, else fresh), the strict reads of the passed files, and the one
computation of the new credentials from the current roots (:mod:`pysentry.cli.rotation`). A place
only supplies the current ``ca.crt`` and the clock skew, and writes the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pysentry.cli import console
from pysentry.cli.backend import Credentials
from pysentry.cli.console import CliError
from pysentry.cli.pemfile import certificates, read_regular, scan
from pysentry.cli.pemfile import private_key as pem_private_key
from pysentry.cli.rotation import Renewal, generate, provided
from pysentry.credentials import (
    CA_FILENAME,
    CREDENTIAL_FILENAMES,
    ISSUER_CERT_FILENAME,
    ISSUER_KEY_FILENAME,
)
from pysentry.errors import InvalidBundle
from pysentry.pki.keys import KeyAlgorithm, PrivateKey, generate_key

ALL_FLAGS_MESSAGE = (
    'all required flags for this certificate rotation path, "ca-root-certificate", '
    '"issuer-private-key" and "issuer-public-certificate" are not present'
)
EC_KEY_FIX = (
    "Dapr's Kubernetes rotation takes an ECDSA root key ('EC PRIVATE KEY'); make one with "
    "'openssl ecparam -name prime256v1 -genkey -noout -out root.key'"
)

_NAMES = "|".join(re.escape(name) for name in CREDENTIAL_FILENAMES)
_FILE_AT_LINE_START = re.compile(rf"^({_NAMES}):", re.MULTILINE)
_FILE_WORD = re.compile(rf"(?<![\w./'-])({_NAMES})(?![\w-])")


@dataclass(frozen=True, slots=True)
class Given:
    """A file passed with a flag: its bytes and how messages name it."""

    flag: str
    path: Path
    data: bytes

    @property
    def label(self) -> str:
        return f"{self.flag} {str(self.path)!r}"

    @classmethod
    def read(cls, flag: str, value: str) -> Given:
        path = Path(value).expanduser().absolute()  # absolute: never re-matched by _FILE_WORD
        return cls(flag, path, read_regular(path, f"{flag} {str(path)!r}"))


def _name_given_files(message: str, given: dict[str, Given]) -> str:
    """Bundle problems name ``ca.crt`` etc.; say which passed file each one is about."""
    message = _FILE_AT_LINE_START.sub(lambda m: given[m.group(1)].label + ":", message)
    return _FILE_WORD.sub(lambda m: repr(str(given[m.group(1)].path)), message)


@dataclass(frozen=True, slots=True)
class RenewInputs:
    """The selected path: ``files`` (by credential file name) for provided certificates, else
    the root key (loaded from ``--private-key`` or freshly generated)."""

    files: dict[str, Given] | None
    root_key: PrivateKey | None
    ttl: timedelta
    trust_domain: str | None

    @property
    def generated(self) -> bool:
        return self.files is None


def read_provided(ca: str, key: str, cert: str) -> dict[str, Given]:
    """The three passed files by credential file name, each read and parsed strictly."""
    files = {
        CA_FILENAME: Given.read("--ca-root-certificate", ca),
        ISSUER_CERT_FILENAME: Given.read("--issuer-public-certificate", cert),
        ISSUER_KEY_FILENAME: Given.read("--issuer-private-key", key),
    }
    for name in (CA_FILENAME, ISSUER_CERT_FILENAME):
        certificates(files[name].data, files[name].label)
    pem_private_key(files[ISSUER_KEY_FILENAME].data, files[ISSUER_KEY_FILENAME].label)
    return files


def select_inputs(
    *,
    ca_root_certificate: str | None,
    issuer_private_key: str | None,
    issuer_public_certificate: str | None,
    private_key: str | None,
    valid_until_days: int,
    trust_domain: str | None,
    kubernetes: bool,
) -> RenewInputs:
    """Dapr's path selection; prints the path's line and reads every passed file strictly.

    ``kubernetes`` selects Dapr's texts and rule for ``-k``: ``--private-key`` must be ECDSA.
    """
    ttl = timedelta(days=valid_until_days)
    given = (ca_root_certificate, issuer_private_key, issuer_public_certificate)
    if any(value is not None for value in given):
        if not all(value and value.strip() for value in given):
            raise CliError(ALL_FLAGS_MESSAGE)
        console.info("Using provided certificates")
        return RenewInputs(read_provided(*(str(value) for value in given)), None, ttl, trust_domain)
    if private_key is not None:
        if not private_key.strip():
            raise CliError('"privateKey" flag has incorrect value')
        console.info(
            "Using password file to generate root certificate"  # sic, Dapr's -k line
            if kubernetes
            else "Using the provided private key to generate the root certificate"
        )
        key_file = Given.read("--private-key", private_key)
        root_key = pem_private_key(key_file.data, key_file.label)
        if kubernetes and not isinstance(root_key, ec.EllipticCurvePrivateKey):
            kind = type(root_key).__name__.removeprefix("_").replace("PrivateKey", "")
            raise CliError(f"{key_file.label}: the key is {kind}, not ECDSA; {EC_KEY_FIX}")
        return RenewInputs(None, root_key, ttl, trust_domain)
    console.info("generating fresh certificates")
    return RenewInputs(None, generate_key(KeyAlgorithm.EC_P256), ttl, trust_domain)


def current_anchors(data: bytes | None, label: str) -> tuple[x509.Certificate, ...]:
    """The roots of the current ``ca.crt`` (none if there is none); any damage is an error, so
    that a rewrite never drops a root this command could not read."""
    if data is None:
        return ()
    anchors = certificates(data, label, only_certificates=True)
    if scan(data, label).stray_text:
        console.warning(f"{label}: the text outside its PEM blocks is not kept in the new file")
    return anchors


def renewal_for(
    inputs: RenewInputs,
    current: tuple[x509.Certificate, ...],
    *,
    now: datetime,
    skew: timedelta,
) -> Renewal:
    """The new credentials, validated as Sentry loads them (``CliError`` naming the problem)."""
    if inputs.files is not None:
        files = inputs.files
        try:
            return provided(
                Credentials(*(files[name].data for name in CREDENTIAL_FILENAMES)),
                current,
                now=now,
            )
        except InvalidBundle as err:
            raise CliError(_name_given_files(str(err), files)) from err
    assert inputs.root_key is not None
    return generate(
        inputs.root_key,
        current,
        trust_domain=inputs.trust_domain,
        now=now,
        ttl=inputs.ttl,
        skew=skew,
    )
