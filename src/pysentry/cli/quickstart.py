"""The real quickstart behind ``make demo``: Sentry, two apps under ``dapr run``, one mTLS call.

Everything runs in a temporary ``HOME`` on 127.0.0.1 with free ports, and everything started is
stopped at the end (process groups; a final scan of ``/proc`` proves nothing is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509

from pysentry.cli.chainview import render
from pysentry.cli.console import CliError
from pysentry.cli.demo_apps import APP_A, APP_B
from pysentry.cli.demo_procs import (
    DemoFailed,
    Proc,
    dapr_argv,
    http_ok,
    sentry_argv,
    spawn,
    stop_all,
    wait_for,
)
from pysentry.cli.pemfile import certificates, label_of, read_regular
from pysentry.cli.procs import free_port
from pysentry.cli.status import running_sidecars
from pysentry.clock import system_clock
from pysentry.credentials import CA_FILENAME, CREDENTIAL_FILENAMES
from pysentry.pki.csr import build_csr
from pysentry.pki.keys import generate_key
from pysentry.pki.svid import authorize_id, verify_svid
from pysentry.spiffe import SpiffeId


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _command(env: dict[str, str], *args: str) -> str:
    print(f"$ dapr {' '.join(args)}", flush=True)
    done = subprocess.run(
        dapr_argv(*args), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    out = done.stdout.rstrip()
    if out:
        print(out, flush=True)
    if done.returncode != 0:
        raise DemoFailed(
            f"'dapr {' '.join(args)}' exited with {done.returncode}: {done.stderr.strip()}"
        )
    return out


async def peek_chain(
    address: str, sentry: str, anchors: tuple[x509.Certificate, ...]
) -> tuple[x509.Certificate, ...]:
    """Handshake with a sidecar's internal port, presenting an SVID from Sentry; its chain."""
    from pysentry.security.identity import X509Svid
    from pysentry.security.sentry_client import SentryClient
    from pysentry.security.tls import client_context, peer_chain

    key = generate_key()
    chain = await SentryClient(sentry, anchors).sign(
        build_csr(key), app_id="quickstart", namespace="default"
    )
    host, _, port = address.rpartition(":")
    ctx = client_context(X509Svid.from_chain(chain, key), anchors)
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=host)
    try:
        return peer_chain(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()


def _quickstart(tmp: Path, procs: list[Proc]) -> None:
    home = tmp / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAPR_", "APP_")) and k != "NAMESPACE"
    }
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS="160")
    dapr_dir = home / ".dapr"

    _step("1. dapr init (self-hosted, temporary HOME)")
    _command(env, "init")
    config = dapr_dir / "config.yaml"
    config.write_text(config.read_text().replace("enabled: false", "enabled: true"))
    print(f"(set spec.mtls.enabled: true in {config})")

    _step("2. start Sentry on the credentials directory")
    sentry_port, healthz = free_port(), free_port()
    sentry_address = f"localhost:{sentry_port}"
    sentry = spawn(
        "sentry",
        sentry_argv(dapr_dir / "certs", config, port=sentry_port, healthz_port=healthz),
        env,
        tmp,
    )
    procs.append(sentry)
    wait_for(
        "Sentry /healthz", lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), procs=[sentry]
    )
    print(
        f"Sentry is up on {sentry_address}; it created {', '.join(CREDENTIAL_FILENAMES)} in "
        f"{dapr_dir / 'certs'}"
    )

    _step("3. dapr run appB (HTTP server) and appA (calls appB through its sidecar)")
    (tmp / "app_b.py").write_text(APP_B)
    (tmp / "app_a.py").write_text(APP_A)
    stop_file = tmp / "stop-appA"
    app_b = spawn(
        "appB",
        dapr_argv(
            "run",
            "--app-id",
            "appB",
            "--app-port",
            str(free_port()),
            "--sentry-address",
            sentry_address,
            "--",
            sys.executable,
            str(tmp / "app_b.py"),
        ),
        env,
        tmp,
    )
    procs.append(app_b)
    wait_for(
        "appB's sidecar and app",
        lambda: (
            app_b.has("appB listening")
            and any(r.app_id == "appB" and r.spiffe_id for r in running_sidecars(config, dapr_dir))
        ),
        procs=[app_b],
    )
    app_a = spawn(
        "appA",
        dapr_argv(
            "run",
            "--app-id",
            "appA",
            "--sentry-address",
            sentry_address,
            "--",
            sys.executable,
            str(tmp / "app_a.py"),
            str(stop_file),
        ),
        env,
        tmp,
    )
    procs.append(app_a)
    wait_for(
        "the mTLS call from appA to appB", lambda: app_a.has("DEMO-CALL-OK"), procs=[app_a, app_b]
    )

    _step("4. the certificate appB's sidecar presents (TLS handshake with its internal port)")
    b_reg = next(r for r in running_sidecars(config, dapr_dir) if r.app_id == "appB")
    ca_path = dapr_dir / "certs" / CA_FILENAME
    anchors = certificates(read_regular(ca_path, label_of(ca_path, CA_FILENAME)), CA_FILENAME)
    chain = asyncio.run(peek_chain(b_reg.address, sentry_address, anchors))
    peer = verify_svid(
        chain, anchors, now=system_clock(), authorizer=authorize_id(SpiffeId.parse(b_reg.spiffe_id))
    )
    print(f"peer SPIFFE ID: {peer} (verified against {CA_FILENAME})")
    root = next(a for a in anchors if a.subject == chain[-1].issuer)
    print("certificate chain (root -> issuer -> leaf):")
    print(render((root, *reversed(chain[1:]), chain[0])))

    _step("5. dapr mtls expiry and dapr status")
    _command(env, "mtls", "expiry")
    _command(env, "status")

    _step("6. stop everything")
    stop_file.write_text("stop")
    code_a = app_a.popen.wait(timeout=15)
    print(f"appA exited; 'dapr run' for appA returned {code_a} (the app's exit code)")
    app_b.popen.send_signal(signal.SIGINT)
    code_b = app_b.popen.wait(timeout=15)
    print(f"'dapr run' for appB stopped on SIGINT (exit code {code_b})")
    sentry.popen.send_signal(signal.SIGTERM)
    sentry.popen.wait(timeout=10)
    print("Sentry stopped")
    if code_a != 0:
        raise DemoFailed(f"appA's 'dapr run' returned {code_a}")


def run_quickstart() -> int:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="pysentry-quickstart-"))
    procs: list[Proc] = []
    failed: DemoFailed | None = None
    try:
        _quickstart(tmp, procs)
    except (DemoFailed, CliError, subprocess.TimeoutExpired, OSError) as err:
        failed = DemoFailed(str(err))
        for proc in procs:
            print(f"\n--- last lines of {proc.name} ---")
            print("\n".join(proc.lines[-25:]))
    finally:
        leftovers = stop_all(procs, str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
    if leftovers:
        print(f"error: processes left behind and killed: {leftovers}", file=sys.stderr)
        return 1
    print(f"\nNo processes left behind. Quickstart took {time.monotonic() - started:.1f}s.")
    if failed is not None:
        print(f"error: quickstart failed: {failed}", file=sys.stderr)
        return 1
    return 0
