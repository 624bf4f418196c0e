"""``tls.py`` loads ``rotation.py`` only when a rotating context is asked for by its old path.

daprd's first certificate imports :mod:`pysentry.security.tls` (through ``sentry_blocking``)
and has no use for the rotating contexts; Sentry's modules still import them from ``tls``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_tls_and_the_first_certificate_path_do_not_load_rotation() -> None:
    code = (
        "import sys, pysentry.security.tls, pysentry.security.sentry_client;"
        "print('pysentry.security.rotation' in sys.modules)"
    )
    assert _run(code) == "False"


@pytest.mark.parametrize("name", ["RotatingServerContext", "ClientContexts"])
def test_the_old_path_gives_the_rotation_class(name: str) -> None:
    code = (
        f"from pysentry.security.tls import {name} as old;"
        "from pysentry.security import rotation;"
        f"print(old is rotation.{name})"
    )
    assert _run(code) == "True"


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import pysentry.security.tls as tls

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchContext'"):
        _ = tls.NoSuchContext
