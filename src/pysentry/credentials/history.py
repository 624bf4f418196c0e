"""The roots Sentry last served, kept next to the credentials so a regenerated CA can keep
trusting them.

Dapr's docs replace a CA by deleting the three files and restarting Sentry. The new ca.crt then
holds only the new root, and every sidecar that still carries a certificate from the old root
is refused by the ones that already renewed, for up to half a certificate lifetime. So when
Sentry generates a CA it writes its root to ``.pysentry-previous-roots.crt`` in the credentials
directory (public certificates, mode 0600 like the rest), and each later load of that directory
brings the file up to date (a directory holding a user's own CA never gets one); when Sentry has to
generate a new CA, the still-valid roots found there are appended to the new ``ca.crt``, and
Sentry says how to drop them (``dapr mtls drop-old-roots``) once every sidecar has renewed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from cryptography import x509

from pysentry.errors import PysentryError
from pysentry.fileio import read_file, write_atomic
from pysentry.pki.pem import dump_certificates, strict_certificates

log = logging.getLogger(__name__)

HISTORY_FILENAME = ".pysentry-previous-roots.crt"


class RootHistory:
    def __init__(self, directory: Path) -> None:
        self.path = directory / HISTORY_FILENAME

    def remember(self, roots: tuple[x509.Certificate, ...]) -> None:
        """Record ``roots`` (best effort: a read-only directory just keeps no history)."""
        data = dump_certificates(roots)
        try:
            if self.path.is_file() and self.path.read_bytes() == data:
                return
            write_atomic(self.path, data)
        except OSError as err:
            log.debug("Not recording the current roots in %s: %s", self.path, err)

    def recall(self, now: datetime) -> tuple[x509.Certificate, ...]:
        """The recorded roots that have not expired; a damaged history is ignored, with a log."""
        if not self.path.exists():
            return ()
        try:
            pem = read_file(self.path, "previous roots")
            roots = strict_certificates(pem, str(self.path))
        except (PysentryError, OSError, ValueError) as err:
            log.warning("Ignoring the previous roots in %s: %s", self.path, err)
            return ()
        return tuple(r for r in roots if r.not_valid_after_utc > now)
