"""``dapr init`` (self-hosted): create ``~/.dapr`` with ``certs/`` (0700) and a default config.

Unlike Dapr's CLI it downloads nothing and starts no containers: the ``sentry`` and ``daprd``
commands come with this package. Running it again keeps existing files.
"""

from __future__ import annotations

import os
import stat

import typer

from pysentry.cli import console
from pysentry.cli.home import DEFAULT_CONFIG, DaprHome
from pysentry.fileio import ensure_private_dir, write_atomic


def init_command(ctx: typer.Context) -> None:
    """Set up $HOME/.dapr (config.yaml, certs/) for self-hosted mode.

    Nothing is downloaded and no containers are started: sentry and daprd ship with this
    package. Existing files are kept, so running it twice is safe.
    """
    home: DaprHome = ctx.obj
    console.pending("Making the jump to hyperspace...")
    console.info("Self-hosted mode: nothing to download, sentry and daprd ship with pysentry")
    home.root.mkdir(parents=True, exist_ok=True)

    certs = home.certs_dir
    if certs.is_dir():
        mode = stat.S_IMODE(certs.stat().st_mode)
        if mode & 0o077:
            os.chmod(certs, 0o700)
            console.info(f"Kept {certs}; tightened its mode from {mode:04o} to 0700")
        else:
            console.info(f"Kept existing credentials directory {certs}")
    else:
        ensure_private_dir(certs)
        console.info(f"Created credentials directory {certs} (0700)")

    if home.config_file.exists():
        console.info(f"Kept existing configuration {home.config_file}")
    else:
        write_atomic(home.config_file, DEFAULT_CONFIG.encode(), mode=0o644)
        console.info(f"Wrote default configuration {home.config_file} (mTLS disabled)")

    console.success(
        f"Success! Dapr is initialized in {home.root} (self-hosted). "
        "To get started, go here: https://aka.ms/dapr-getting-started"
    )
    console.info(
        "To enable mTLS: set spec.mtls.enabled to true in "
        f"{home.config_file}, then run "
        f"'sentry --issuer-credentials {certs} --trust-domain cluster.local'"
    )
