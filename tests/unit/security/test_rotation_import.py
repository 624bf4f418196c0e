"""daprd's first certificate imports :mod:`pysentry.security.tls` (through ``sentry_blocking``)
and has no use for the rotating contexts of :mod:`pysentry.security.rotation`: it is not loaded."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_tls_and_the_first_certificate_path_do_not_load_rotation() -> None:
    code = (
        "import sys, pysentry.security.tls, pysentry.security.sentry_client;"
        "print('pysentry.security.rotation' in sys.modules)"
    )
    assert _run(code) == "False"
