"""The docs' ``step`` recipe, verbatim, end to end with pysentry's and Dapr's Go binaries.

``step certificate create`` gives the root and the issuer the same subject
(``CN=cluster.local``), and the issuer no authority key identifier: OpenSSL's chain builder
takes such an issuer for self-signed, Go follows the signature to the root. pysentry's
sidecars verify peers as Go does (see ``pysentry.security.tls``), so every pairing works:
pysentry Sentry or Go Sentry, pysentry daprd or Go daprd.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from pysentry.pki.pem import load_certificates
from tests.e2e.conftest import Cluster
from tests.interop.daprbins import DaprBinaries
from tests.interop.realdapr import go_daprd, go_sentry, py_daprd
from tests.interop.test_real_dapr_pki import _invoke_all

#: docs.dapr.io "Setup & configure mTLS certificates", "Generating certificates with step".
STEP_RECIPE = (
    "step certificate create cluster.local ca.crt ca.key --profile root-ca --no-password"
    " --insecure",
    "step certificate create cluster.local issuer.crt issuer.key --ca ca.crt --ca-key ca.key"
    " --profile intermediate-ca --not-after 8760h --no-password --insecure",
)


def step_credentials(bins: DaprBinaries, directory: Path) -> bytes:
    """Run the recipe in ``directory``; returns the root PEM (the trust anchors)."""
    directory.mkdir(mode=0o700)
    for line in STEP_RECIPE:
        argv = shlex.split(line)
        argv[0] = str(bins.step)
        done = subprocess.run(
            argv, cwd=directory, capture_output=True, text=True, timeout=60, env={"HOME": "/"}
        )
        assert done.returncode == 0, f"{line}: {done.stderr}"
    (root,) = load_certificates((directory / "ca.crt").read_bytes())
    (issuer,) = load_certificates((directory / "issuer.crt").read_bytes())
    # The shape that trips OpenSSL: same subject, and no AKI on the issuer.
    assert root.subject == issuer.subject == issuer.issuer
    with pytest.raises(x509.ExtensionNotFound):
        issuer.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    return (directory / "ca.crt").read_bytes()


@pytest.mark.parametrize("sentry_kind", ["pysentry", "go"])
async def test_step_recipe_works_in_every_pairing(
    dapr_bins: DaprBinaries, cluster: Cluster, sentry_kind: str
) -> None:
    creds = cluster.tmp / "creds"
    anchors = step_credentials(dapr_bins, creds)
    if sentry_kind == "go":
        _, sentry_port = await go_sentry(cluster, dapr_bins, creds)
    else:
        _, sentry_port = await cluster.sentry(creds)
    _, app_a = await cluster.app("appA")
    _, app_b = await cluster.app("appB")
    _, app_g = await cluster.app("appG")
    a = await py_daprd(cluster, "appA", app_a, sentry_port=sentry_port, anchors_pem=anchors)
    b = await py_daprd(cluster, "appB", app_b, sentry_port=sentry_port, anchors_pem=anchors)
    g = await go_daprd(
        cluster, dapr_bins, "appG", app_g, sentry_port=sentry_port, anchors_pem=anchors
    )
    await _invoke_all(a, b, g)
