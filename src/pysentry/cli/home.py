"""The self-hosted installation directory: ``$HOME/.dapr`` with ``config.yaml`` and ``certs/``.

``DaprHome.resolve(override)`` honours an explicit directory (the hidden ``--home`` option or the
``DAPR_HOME`` environment variable) and otherwise ``$HOME/.dapr``, as the Dapr CLI does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DAPR_DIR_NAME = ".dapr"
CERTS_DIR_NAME = "certs"
CONFIG_FILE_NAME = "config.yaml"
HOME_ENV = "DAPR_HOME"
DEFAULT_SENTRY_ADDRESS = "localhost:50001"

DEFAULT_CONFIG = """\
# Dapr configuration written by `dapr init` (self-hosted).
# `dapr run` passes this file to daprd with --config unless you give another one.
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprConfig
spec:
  # Mutual TLS between sidecars is disabled by default in self-hosted mode. To enable it:
  #   1. start Sentry on the credentials directory (it creates a CA there on first start):
  #        sentry --issuer-credentials $HOME/.dapr/certs --trust-domain cluster.local
  #   2. set `enabled: true` below. `dapr run` then adds --enable-mtls and
  #      --sentry-address localhost:50001 to daprd and loads the trust anchors
  #      from $HOME/.dapr/certs/ca.crt for you.
  mtls:
    enabled: false
    # workloadCertTTL: "24h"
    # allowedClockSkew: "15m"
"""


@dataclass(frozen=True, slots=True)
class DaprHome:
    """Paths of a self-hosted installation."""

    root: Path

    @classmethod
    def resolve(cls, override: Path | None = None) -> DaprHome:
        if override is not None:
            return cls(override.expanduser().absolute())
        env = os.environ.get(HOME_ENV, "")
        if env:
            return cls(Path(env).expanduser().absolute())
        return cls(Path.home() / DAPR_DIR_NAME)

    @property
    def certs_dir(self) -> Path:
        return self.root / CERTS_DIR_NAME

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE_NAME
