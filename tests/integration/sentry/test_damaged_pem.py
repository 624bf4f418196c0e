"""A real sentry whose ca.crt has a cut second root refuses to start, naming ca.crt and the fix.

Dapr's Sentry decodes ``ca.crt`` with Go's ``encoding/pem``, which skips the cut block: it starts
with one root and serves a trust bundle that silently lacks the second.
"""

from __future__ import annotations

from pathlib import Path

from pysentry.testing import TestCA

from .conftest import run_sentry_to_exit


def test_cut_second_root_in_ca_crt_is_a_startup_error(tmp_path: Path) -> None:
    creds = tmp_path / "certs"
    creds.mkdir(mode=0o700)
    ca = TestCA.create("cluster.local")
    ca.write_credentials(creds)
    two = ca.anchors_pem() + TestCA.create("cluster.local").anchors_pem()
    second = two.index(b"-----BEGIN", 1)
    (creds / "ca.crt").write_bytes(two[: second + (len(two) - second) // 2])
    before = {p.name: p.read_bytes() for p in creds.iterdir()}

    code, output = run_sentry_to_exit(creds)

    assert code == 1, output
    assert (
        "ca.crt: PEM block #2 ('CERTIFICATE') has no END line: the file is truncated or the "
        "block is damaged; restore it from a backup or from where it was copied, or remove the "
        "damaged block"
    ) in output, output
    assert "Traceback" not in output
    assert "generating self signed CA" not in output
    assert {p.name: p.read_bytes() for p in creds.iterdir()} == before  # nothing rewritten
