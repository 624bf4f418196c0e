"""``dapr mtls export``: copy the three credential files, checked, into a private directory.

Every check runs before anything is created or written: the three files must read and parse
(:mod:`pysentry.cli.pemfile`), the issuer key must belong to the issuer certificate, the target
must not be the credentials directory, and an existing ``ca.crt``/``issuer.crt``/``issuer.key``
there must be a regular file. Missing directories are created 0700 and the files written 0600,
whatever the umask; all three are staged before any is renamed in (:mod:`pysentry.cli.staging`).
Existing files are replaced, as Dapr's ``os.WriteFile`` does, and the command lists them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from pysentry.cli.backend import Credentials, SelfHostedCredentials
from pysentry.cli.console import CliError
from pysentry.cli.pemfile import certificates, private_key
from pysentry.cli.staging import PartiallyWritten, write_files
from pysentry.credentials import (
    CA_FILENAME,
    CREDENTIAL_FILENAMES,
    ISSUER_CERT_FILENAME,
    ISSUER_KEY_FILENAME,
)
from pysentry.fileio import ensure_private_dir
from pysentry.pki.keys import same_public_key

Labeller = Callable[[str], str]  # a credential's name -> how messages name it


def check_credentials(label: Labeller, data: Credentials) -> None:
    """Each file parses and the issuer key is the issuer certificate's (else :class:`CliError`)."""
    certificates(data.ca_pem, label(CA_FILENAME))
    issuer = certificates(data.issuer_pem, label(ISSUER_CERT_FILENAME))[0]
    key = private_key(data.key_pem, label(ISSUER_KEY_FILENAME))
    if not same_public_key(key.public_key(), issuer.public_key()):
        raise CliError(
            f"{label(ISSUER_KEY_FILENAME)}: does not match the issuer certificate in "
            f"{label(ISSUER_CERT_FILENAME)}; put the issuer's own key there "
            "('dapr mtls check' shows every problem)"
        )


def _existing(target: Path) -> tuple[str, ...]:
    """Names that ``export`` would replace in ``target``; anything but a file is refused."""
    found = []
    for name in CREDENTIAL_FILENAMES:
        path = target / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as err:
            raise CliError(f"cannot inspect {str(path)!r}: {err.strerror}") from err
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise CliError(f"{str(path)!r} exists and is not a file; move it away or choose --out")
        found.append(name)
    return tuple(found)


def export(creds: SelfHostedCredentials, target: Path) -> tuple[str, ...]:
    """Write the three files into ``target``; returns the names that already existed there."""
    data = creds.read()
    if target.resolve() == creds.directory.resolve():
        raise CliError(f"{str(target)!r} is the credentials directory itself; choose another --out")
    return export_credentials(data, creds.label, target)


def export_credentials(data: Credentials, label: Labeller, target: Path) -> tuple[str, ...]:
    """Check ``data`` (named in errors by ``label``) and write it into ``target``, as
    :func:`export`; for credentials read from elsewhere (the cluster's Secret)."""
    check_credentials(label, data)
    if os.path.lexists(target) and not target.is_dir():
        raise CliError(f"{str(target)!r} exists and is not a directory; choose another --out")
    replaced = _existing(target)
    try:
        ensure_private_dir(target)
    except OSError as err:
        raise CliError(f"cannot create {str(target)!r}: {err.strerror}") from err
    try:
        write_files(
            target,
            (
                (CA_FILENAME, data.ca_pem),
                (ISSUER_CERT_FILENAME, data.issuer_pem),
                (ISSUER_KEY_FILENAME, data.key_pem),
            ),
        )
    except PartiallyWritten as err:
        raise CliError(
            f"writing to {str(target)!r} stopped after {', '.join(err.replaced)}: "
            f"{err.strerror}; fix the cause and export again"
        ) from err
    except OSError as err:
        raise CliError(
            f"cannot write to {str(target)!r}: {err.strerror}; no file was written"
        ) from err
    return replaced
