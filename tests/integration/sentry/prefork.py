"""Start many real ``sentry`` processes fast: fork them from one interpreter that imported it.

Importing Sentry takes 0.5-2 s on this machine, which would make 50+ kill-and-restart cycles
take minutes. The fork server imports ``pysentry.sentry.main`` once, then forks a child per
request; each child is a separate process that runs Sentry's own ``main(argv)`` with its own
environment, umask, working directory, log file and (optionally) an unprivileged uid, and is
killed with real signals. Nothing in Sentry is replaced or stubbed: only the interpreter start-up
is shared.

Run as a script, it is the server (JSON lines on stdin/stdout). :class:`Prefork` is the client.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conftest import SentryProcess

# Modules Sentry imports lazily while running (found with a sys.modules diff over a start, a
# reload, a signing and a shutdown). An unprivileged child cannot read the interpreter's stdlib
# under /root, so everything it will need is imported before it drops its privileges.
WARM = (
    "pysentry.sentry.main",
    "watchfiles",
    "anyio",
    "anyio._backends._asyncio",
    "anyio.to_thread",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "concurrent.futures.thread",
    "cryptography.hazmat.backends.openssl",
    "encodings.idna",
    "google.protobuf.any_pb2",
    "google.rpc.status_pb2",
    "uvloop",
    "queue",
    "stringprep",
    "pysentry.pki.csr",
)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: set the process up as requested, run Sentry, never return."""
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("umask") is not None:
            os.umask(request["umask"])
        os.chdir(request["cwd"])
        uid = request.get("uid")
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from pysentry.sentry.main import main

        try:
            main(request["argv"])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    for name in WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
                _child(request)
            answer: dict[str, Any] = {"pid": pid}
        else:  # "wait": reap one child, waiting at most "timeout" seconds
            answer = {"pid": request["pid"], "code": _reap(request["pid"], request["timeout"])}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _reap(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


class Child:
    """A forked sentry; quacks like the ``subprocess.Popen`` that ``SentryProcess`` holds."""

    def __init__(self, server: Prefork, pid: int) -> None:
        self._server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.reap(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._server.reap(self.pid, 30.0 if timeout is None else timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 30.0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Prefork:
    """Client of the fork server (one per test module)."""

    def __init__(self) -> None:
        src = Path(__file__).resolve()
        self._proc = subprocess.Popen(
            [sys.executable, str(src)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=src.parents[3],
        )
        self._pending = b""
        assert self._answer(60.0).get("ready"), "fork server did not start"

    def _answer(self, timeout: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"fork server gave no answer in {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError("fork server exited")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return dict(json.loads(line))

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request).encode() + b"\n")
        self._proc.stdin.flush()
        return self._answer(timeout + 10.0)

    def spawn(
        self,
        argv: list[str],
        log: Path,
        *,
        env: dict[str, str],
        cwd: Path,
        umask: int | None = None,
        uid: int | None = None,
    ) -> Child:
        request = {
            "op": "spawn",
            "argv": argv,
            "log": str(log),
            "env": env,
            "cwd": str(cwd),
            "umask": umask,
            "uid": uid,
        }
        return Child(self, int(self._ask(request, 0)["pid"]))

    def reap(self, pid: int, timeout: float) -> int | None:
        code = self._ask({"op": "wait", "pid": pid, "timeout": timeout}, timeout)["code"]
        return None if code is None else int(code)

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def spawn_sentry(
    server: Prefork,
    workdir: Path,
    creds: Path,
    *extra: str,
    umask: int | None = None,
    uid: int | None = None,
    env: dict[str, str] | None = None,
) -> SentryProcess:
    """A forked sentry on free loopback ports, logging to a new file in ``workdir``."""
    from .conftest import SentryProcess, _env, sentry_command

    cmd, ports = sentry_command(creds, *extra)
    log = workdir / f"sentry-{time.monotonic_ns()}.log"
    log.touch(mode=0o644)
    child = server.spawn(cmd[3:], log, env=env or _env(), cwd=workdir, umask=umask, uid=uid)
    return SentryProcess(child, creds, log, args=tuple(cmd), **ports)  # type: ignore[arg-type]


if __name__ == "__main__":
    serve()
