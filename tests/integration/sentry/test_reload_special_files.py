"""Reloading never blocks the event loop: a FIFO, a directory or a device in place of a
credential file is refused by name, while /healthz and signing keep answering.

Before the fix, a FIFO in place of issuer.key stalled /healthz until something wrote into the
FIFO (9.9 s when a writer came after 10 s); now the worst /healthz answer during the same swap
stays in the tens of milliseconds (see the printed figures).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

from pysentry.pki.pem import load_certificates

from .conftest import SentryProcess, StartSentry, make_request, openssl_verify

PROBE_TIMEOUT_S = 2.0


class HealthProbe:
    """Asks /healthz every 20 ms from a thread; records every latency and every failure."""

    def __init__(self, sentry: SentryProcess) -> None:
        self._url = f"http://127.0.0.1:{sentry.healthz_port}/healthz"
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self._url, timeout=PROBE_TIMEOUT_S) as resp:
                    resp.read()
            except Exception as err:  # an HTTP error or a timeout: both are failures here
                self.failures.append(repr(err))
            self.latencies.append(time.monotonic() - started)
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def swap_in(path: Path, make: str) -> bytes:
    """Put a FIFO, a directory or a device symlink at ``path`` (atomically); return the file."""
    original = path.read_bytes()
    tmp = path.with_name(".swap")
    if make == "fifo":
        os.mkfifo(tmp)
    elif make == "directory":
        tmp.mkdir()
        (tmp / "inside").write_text("x")
    else:
        tmp.symlink_to("/dev/zero")  # a read would never end
    if make == "directory":
        path.unlink()
        tmp.rename(path)
    else:
        os.replace(tmp, path)
    return original


def restore(path: Path, content: bytes) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    tmp = path.with_name(".restore")
    tmp.write_bytes(content)
    tmp.chmod(0o600)
    os.replace(tmp, path)


async def test_special_files_are_refused_without_blocking(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    creds = tmp_path / "certs"
    sentry = start_sentry("--trust-domain", "cluster.local", creds=creds)
    anchors = sentry.anchors_pem()
    probe = HealthProbe(sentry)
    cases = [
        ("issuer.key", "fifo", "is a named pipe (FIFO), not a regular file"),
        ("issuer.crt", "directory", "is a directory, not a regular file"),
        ("ca.crt", "device", "is a character device, not a regular file"),
    ]
    sign_worst = 0.0
    try:
        for rejected, (name, make, reason) in enumerate(cases, start=1):
            original = swap_in(creds / name, make)
            # The directory takes an unlink and a rename: the watcher may see the file missing
            # in between (one more rejection, for that), so wait for this case's own reason.
            sentry.wait_for_log(f"{str(creds / name)!r}: {reason}")
            status, body = sentry.healthz()
            assert status == 200
            detail = body["detail"]
            assert isinstance(detail, dict) and reason in detail["issuer-credentials"]
            started = time.monotonic()
            response = await sentry.sign(make_request(f"app-{make}"), anchors_pem=anchors)
            sign_worst = max(sign_worst, time.monotonic() - started)
            chain = load_certificates(response.workload_certificate)
            assert "OK" in openssl_verify(tmp_path, anchors, chain)
            failed = re.search(
                r"^dapr_sentry_issuercert_reload_failed_total (\S+)$", sentry.metrics(), re.M
            )
            assert failed is not None and float(failed.group(1)) >= rejected
            restore(creds / name, original)
            sentry.wait_for_log("CA certificate key pair ready", count=rejected + 1)
            assert sentry.healthz()[1]["detail"] == {}
    finally:
        probe.stop()
    assert sentry.proc.poll() is None
    assert probe.failures == []
    assert len(probe.latencies) > 20
    print(
        f"\nhealthz probes={len(probe.latencies)} worst={max(probe.latencies) * 1000:.0f}ms "
        f"sign worst={sign_worst * 1000:.0f}ms"
    )
