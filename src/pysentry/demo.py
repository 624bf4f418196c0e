"""``make demo``: the pysentry quickstart (``python -m pysentry.demo``).

With the ``sentry`` and ``daprd`` entry points present it runs the real flow (``dapr init`` in a
temporary home, Sentry, two apps under ``dapr run``, an mTLS call, ``dapr mtls expiry`` and
``dapr status``). Without them it runs the offline demo: a CA, two SVIDs from fresh CSRs and one
mutual-TLS handshake on loopback.
"""

from __future__ import annotations

import importlib.util
import sys


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def main() -> int:
    if _have("pysentry.sentry.main") and _have("pysentry.sidecar.main"):
        from pysentry.cli.quickstart import run_quickstart

        return run_quickstart()
    from pysentry.cli.offline_demo import run_offline_demo

    print("(sentry/daprd not available yet: running the offline demo)")
    return run_offline_demo()


if __name__ == "__main__":
    sys.exit(main())
