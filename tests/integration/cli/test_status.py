"""``dapr list`` / ``dapr status`` without sidecars: empty list, CA expiry and the 30-day warning.

With running sidecars they are exercised by tests/e2e (quickstart and CLI flows).
"""

from __future__ import annotations

import json

from tests.integration.cli.conftest import Dapr


def test_list_and_status_without_sidecars(dapr: Dapr) -> None:
    assert json.loads(dapr("list", "-o", "json").stdout) == []
    assert "No Dapr instances found." in dapr("list").stdout
    bad = dapr("list", "-o", "yaml")
    assert bad.returncode == 2 and "--output 'yaml' is not supported" in bad.stderr
    nothing = dapr("status")
    assert nothing.returncode == 0 and "mTLS is not set up" in nothing.stdout

    assert dapr("mtls", "renew-certificate", "--valid-until", "5").returncode == 0
    status = dapr("status")
    assert status.returncode == 0, status.output
    assert "Root certificate expires in 11" in status.stdout  # 119 or 120 hours
    assert (
        "⚠  Dapr root certificate of your self-hosted installation expires in 4 days. Expiry date: "
    ) in status.stdout
    assert "certificate renewal instructions" in status.stdout
