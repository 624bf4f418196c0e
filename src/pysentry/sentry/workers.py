"""``sentry --workers N``: the main process and N forked signing workers on one gRPC port.

The main process binds the gRPC sockets (so a port in use fails exactly as with one process),
holds the one CA state (store, reloader, Kubernetes watch, serving SVID), serves ``/healthz``
and ``/metrics``, and forks the workers (:mod:`pysentry.sentry.worker`). Every worker accepts
on the same inherited listening sockets; the kernel hands each new connection to one of them.

- Updates: after a reload the parent sends the new bundle to every worker, and after each
  rotation of the serving certificate the new SVID. One watcher, one reload log line, one set of
  reload metrics; a worker forked later starts from the parent's current state.
- A worker that dies is logged and replaced (at once if it had run for a while, else after a
  pause that doubles up to 10 s). One that fails before it first became ready makes the start
  fail: its reason is the fatal error.
- :meth:`WorkerPool.stop` sends SIGTERM to all, waits for them (SIGKILL after 10 s) and reaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.multiprocess import mark_process_dead

from pysentry.errors import PysentryError
from pysentry.pki.bundle import CaBundle
from pysentry.security.identity import X509Svid
from pysentry.sentry.monitoring import Health
from pysentry.sentry.worker import (
    MESSAGE_LIMIT,
    WorkerSpec,
    bundle_message,
    encode,
    run_in_child,
    svid_message,
)

log = logging.getLogger("pysentry.sentry")

STOP_TIMEOUT_S = 10.0
STABLE_AFTER_S = 10.0
"""A worker that ran this long before dying is replaced at once."""
MAX_RESTART_PAUSE_S = 10.0
WORKERS_DETAIL = "workers"


class WorkerFailed(PysentryError):
    """A worker could not start; the message is its reason."""


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Worker:
    index: int
    pid: int
    pidfd: int
    started: float
    ready: asyncio.Future[dict[str, bool]]
    exited: asyncio.Future[int]
    writer: asyncio.StreamWriter | None = None
    backlog: list[bytes] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        if self.writer is None:
            self.backlog.append(data)
        elif not self.writer.is_closing():
            self.writer.write(data)


class WorkerPool:
    def __init__(
        self, spec_for: Callable[[int], WorkerSpec], count: int, metrics_dir: str, health: Health
    ) -> None:
        self._spec_for = spec_for
        self._count = count
        self._metrics_dir = metrics_dir
        self._health = health
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._started = False
        self._quick_deaths = dict.fromkeys(range(1, count + 1), 0)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(w.pid for w in self._workers.values())

    async def start(self) -> None:
        """Fork every worker; return once all serve, or raise the first one's failure."""
        for index in range(1, self._count + 1):
            self._spawn(index)
        reports = await asyncio.gather(*(w.ready for w in self._workers.values()))
        self._started = True
        for target in {name for report in reports for name in report}:
            self._health.set_ready(target, all(report.get(target, False) for report in reports))

    def push_bundle(self, bundle: CaBundle) -> None:
        self._broadcast(encode(bundle_message(bundle)))

    def push_svid(self, svid: X509Svid) -> None:
        self._broadcast(encode(svid_message(svid)))

    def _broadcast(self, data: bytes) -> None:
        for worker in self._workers.values():
            worker.send(data)

    def _spawn(self, index: int) -> None:
        spec = self._spec_for(index)
        parent_end, child_end = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_in_child(spec, child_end)
        child_end.close()
        loop = asyncio.get_running_loop()
        worker = _Worker(
            index,
            pid,
            os.pidfd_open(pid),
            time.monotonic(),
            loop.create_future(),
            loop.create_future(),
        )
        self._workers[index] = worker
        loop.add_reader(worker.pidfd, self._reap, worker)
        self._background(self._talk(worker, parent_end))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _talk(self, worker: _Worker, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock, limit=MESSAGE_LIMIT)
        worker.writer = writer
        for data in worker.backlog:
            writer.write(data)
        worker.backlog.clear()
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "ready" in message and not worker.ready.done():
                    worker.ready.set_result(dict(message["ready"]))
                    self._health.set_detail(WORKERS_DETAIL, None)
                elif "fatal" in message and not worker.ready.done():
                    reason = str(message["fatal"])
                    if self._started:  # a replacement: nobody awaits it, say why here
                        log.error("Sentry worker %d cannot start: %s", worker.index, reason)
                    worker.ready.set_exception(WorkerFailed(reason))
        except (OSError, ValueError) as err:
            log.debug("control connection of worker %d: %r", worker.index, err)
        finally:
            writer.close()

    def _reap(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        try:
            _, status = os.waitpid(worker.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: the code is unknown
            code = 1
        with contextlib.suppress(OSError):
            mark_process_dead(worker.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
        if self._workers.get(worker.index) is worker:
            del self._workers[worker.index]
        worker.exited.set_result(code)
        if not worker.ready.done():
            worker.ready.set_exception(
                WorkerFailed(f"sentry worker {worker.index} {describe_exit(code)} while starting")
            )
        if not worker.ready.cancelled():
            worker.ready.exception()  # reported by start(), or logged: not "never retrieved"
        if self._stopping:
            return
        lived = time.monotonic() - worker.started
        quick = 0 if lived >= STABLE_AFTER_S else self._quick_deaths[worker.index] + 1
        self._quick_deaths[worker.index] = quick
        pause = 0.0 if quick == 0 else min(0.25 * 2 ** (quick - 1), MAX_RESTART_PAUSE_S)
        log.error(
            "Sentry worker %d (pid %d) %s; starting a new one%s",
            worker.index,
            worker.pid,
            describe_exit(code),
            f" in {pause:g}s" if pause else "",
        )
        self._health.set_detail(WORKERS_DETAIL, f"worker {worker.index} is being restarted")
        self._background(self._respawn(worker.index, pause))

    async def _respawn(self, index: int, pause: float) -> None:
        await asyncio.sleep(pause)
        if not self._stopping:
            self._spawn(index)

    async def stop(self) -> None:
        """SIGTERM every worker, wait for them all (SIGKILL the late), reap them."""
        self._stopping = True
        workers = list(self._workers.values())
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        exits = [w.exited for w in workers]
        if exits:
            _, late = await asyncio.wait(exits, timeout=STOP_TIMEOUT_S)
            for worker in workers:
                if worker.exited in late:
                    log.warning("Sentry worker %d did not stop in time; killing it", worker.index)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
            if late:
                await asyncio.wait(late, timeout=STOP_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()
        for worker in workers:
            if not worker.ready.done():
                worker.ready.cancel()
            elif not worker.ready.cancelled():
                worker.ready.exception()
