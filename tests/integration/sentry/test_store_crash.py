"""First-start CA generation is crash-atomic: SIGKILL at random moments of a first start, then
start again; the second start always succeeds with one complete, valid CA and no stray key.

Sentries are forked from a pre-imported interpreter (:mod:`.prefork`) so that 60 kill-restart
cycles take seconds; each is still a separate process running Sentry's own ``main`` and killed
with a real SIGKILL. One cycle at the end uses a normal ``python -m`` start.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pysentry.credentials import CREDENTIAL_FILENAMES
from pysentry.credentials.history import HISTORY_FILENAME
from pysentry.credentials.journal import JOURNAL_NAME, staged_path
from pysentry.pki.bundle import CaBundle

from .conftest import SentryProcess, StartSentry, _wait_healthy, make_request
from .prefork import Prefork, spawn_sentry
from .tmpfs import can_mount, mounted_tmpfs

KILLS = 60
SIGN_EVERY = 6  # every 6th restarted Sentry also signs a CSR (all answer /healthz)
_TIME = re.compile(r'time="([^"]+)"')
SAVING = "Generating self-signed CA certs and persisting to store"


@pytest.fixture(scope="module")
def prefork() -> Iterator[Prefork]:
    server = Prefork()
    yield server
    server.close()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs, where fsync is free: SIGKILL semantics are the VFS's, the same as on a disk,
    and 60 generations do not wait for a disk shared with other jobs. The disk itself is
    covered by the normally started Sentry below."""
    if not can_mount():
        yield tmp_path
        return
    with mounted_tmpfs(tmp_path / "tmpfs", "size=64m,mode=0755") as where:
        yield where


def _logged_at(sentry: SentryProcess, text: str) -> float:
    """Unix time of the first log line containing ``text``."""
    for line in sentry.log_text().splitlines():
        if text in line:
            match = _TIME.search(line)
            assert match is not None, line
            return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"{text!r} not logged:\n{sentry.log_text()}")


def state_after_kill(creds: Path) -> str:
    """What a kill left, checking the invariants: a partial set only ever exists under a
    committed journal, and a private key only in issuer.key or its staged file (which the next
    start removes or publishes)."""
    if not creds.is_dir():
        return "no directory"
    names = set(os.listdir(creds))
    targets = names & set(CREDENTIAL_FILENAMES)
    staged = {staged_path(creds / n).name for n in CREDENTIAL_FILENAMES} & names
    journal = creds / JOURNAL_NAME
    committed = journal.exists() and json.loads(journal.read_bytes())["phase"] == "publishing"
    for name in names - {"issuer.key", staged_path(creds / "issuer.key").name}:
        path = creds / name
        assert not (path.is_file() and b"PRIVATE KEY" in path.read_bytes()), (
            f"private key in stray file {name!r}: {sorted(names)}"
        )
    if targets and targets != set(CREDENTIAL_FILENAMES):
        assert committed, f"partial set without a committed journal: {sorted(names)}"
        return "committed, partly published"
    if committed:
        return "committed, " + ("all published" if targets else "none published")
    if targets:
        return "complete"
    if staged:
        return f"{len(staged)} staged"
    return "temp files only" if names else "empty directory"


def check_complete_and_clean(creds: Path) -> CaBundle:
    # the three files, and the record of the served root (public certificates only)
    assert sorted(set(os.listdir(creds)) - {HISTORY_FILENAME}) == sorted(CREDENTIAL_FILENAMES), (
        os.listdir(creds)
    )
    history = creds / HISTORY_FILENAME
    assert not history.exists() or b"PRIVATE KEY" not in history.read_bytes()
    for name in CREDENTIAL_FILENAMES:
        assert stat.S_IMODE((creds / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    return CaBundle.from_pem(
        *((creds / name).read_bytes() for name in CREDENTIAL_FILENAMES), now=datetime.now(UTC)
    )


def _save_span(sentry: SentryProcess) -> list[float]:
    """Seconds from "persisting" to "persisted" in a log; none if it did not get that far."""
    log = sentry.log_text()
    if SAVING not in log or "persisted successfully" not in log:
        return []
    return [_logged_at(sentry, "persisted successfully") - _logged_at(sentry, SAVING)]


def _wait_logged(sentry: SentryProcess, text: str, timeout: float = 20.0) -> None:
    """Return as soon as ``text`` is in the log (a tight poll: the kill must follow closely)."""
    deadline = time.monotonic() + timeout
    while text not in sentry.log_text():
        assert sentry.proc.poll() is None and time.monotonic() < deadline, sentry.log_text()
        time.sleep(0.0005)


async def test_sigkill_during_first_start_never_leaves_a_partial_set(
    prefork: Prefork, fast_dir: Path
) -> None:
    tmp_path = fast_dir
    # How long persisting a generated CA takes on this machine, right now: measured on a few
    # first starts, then on every Sentry that got to persist its CA (the load varies).
    spans: list[float] = []
    for i in range(5):
        sentry = spawn_sentry(prefork, tmp_path, tmp_path / f"calibrate{i}" / "certs")
        _wait_healthy(sentry)
        spans.extend(_save_span(sentry))
        assert sentry.stop() == 0
    seed = int(os.environ.get("PYSENTRY_CRASH_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    landed: Counter[str] = Counter()
    recoveries: Counter[str] = Counter()
    for i in range(KILLS):
        run = tmp_path / f"run{i}"
        run.mkdir()
        creds = run / "parent" / "certs" if i % 3 == 0 else run / "certs"
        if i % 3 == 2:
            creds.mkdir(mode=0o700)  # an empty directory made by the user
        window = statistics.median(spans[-9:]) * 1.3
        victim = spawn_sentry(prefork, run, creds)
        if i % 4 == 0:  # anywhere in the start, from the fork on
            time.sleep(rng.uniform(0, window * 2))
        else:  # while the CA is being persisted
            _wait_logged(victim, SAVING)
            time.sleep(rng.uniform(0, window))
        victim.proc.send_signal(signal.SIGKILL)
        assert victim.proc.wait(timeout=10) in (-signal.SIGKILL, 0, 1), victim.log_text()
        landed[state_after_kill(creds)] += 1
        spans.extend(_save_span(victim))  # when the kill came after the save

        restarted = spawn_sentry(prefork, run, creds)
        _wait_healthy(restarted)  # /healthz 200: the gRPC server runs with an SVID from the CA
        bundle = check_complete_and_clean(creds)
        log = restarted.log_text()
        spans.extend(_save_span(restarted))  # when it generated the CA itself
        for note in re.findall(r"Issuer credentials: ([a-z ]+?) (?:an )?interrupted", log):
            recoveries[note] += 1
        if i % SIGN_EVERY == 0:
            response = await restarted.sign(make_request(f"app{i}"))
            assert response.trust_chain_certificates[0] == bundle.anchors_pem()
        assert restarted.stop() == 0, restarted.log_text()
        assert "incomplete issuer credentials" not in log
    print(
        f"\nseed={seed} median save={statistics.median(spans) * 1000:.1f}ms kills={KILLS} "
        f"survived={KILLS} landed={dict(landed)} recoveries={dict(recoveries)}"
    )
    # The kills must have hit the generation itself, not only before and after it.
    in_flight = sum(n for state, n in landed.items() if "staged" in state or "commit" in state)
    assert in_flight >= 6, landed


def test_sigkill_of_a_normally_started_sentry(start_sentry: StartSentry, tmp_path: Path) -> None:
    """The same cycle with ``python -m pysentry.sentry.main``, killed when it starts generating."""
    from .conftest import _env, sentry_command

    creds = tmp_path / "certs"
    cmd, _ = sentry_command(creds)
    log = tmp_path / "victim.log"
    with log.open("wb") as out:
        victim = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + 30
    while SAVING not in log.read_text() and time.monotonic() < deadline:
        assert victim.poll() is None, log.read_text()
        time.sleep(0.0005)
    time.sleep(random.uniform(0, 0.03))
    victim.kill()
    victim.wait(timeout=10)
    state_after_kill(creds)
    restarted = start_sentry(creds=creds)
    check_complete_and_clean(creds)
    assert restarted.proc.poll() is None


def test_stale_temp_files_of_older_versions_are_removed(prefork: Prefork, tmp_path: Path) -> None:
    """``.issuer.key.<random>.tmp`` files that a killed write left (with a private key in them)
    are removed at the next start; files that only look alike are not."""
    creds = tmp_path / "certs"
    creds.mkdir(mode=0o700)
    stale = creds / ".issuer.key.x7kq2m_a.tmp"
    stale.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    unrelated = creds / ".issuer.key.notes"
    unrelated.write_text("a user's file")
    sentry = spawn_sentry(prefork, tmp_path, creds)
    _wait_healthy(sentry)
    assert not stale.exists() and unrelated.exists()
    assert f"Issuer credentials: removed stale temp file {str(stale)!r}" in sentry.log_text()
    assert sentry.stop() == 0
