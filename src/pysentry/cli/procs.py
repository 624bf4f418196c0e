"""Child processes for ``dapr run``: own process groups, prefixed output, clean termination."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

STOP_GRACE_S = 5.0


#: Ports a free port is never taken from: Sentry's gRPC, healthz and metrics ports (50001, 8080,
#: 9090), daprd's defaults (3500, 50001, 50002, 9090) and Dapr's placement and scheduler ports, so a
#: sidecar started first never takes a port a control-plane process starts on later.
RESERVED_PORTS = frozenset({3500, 6050, 6060, 8080, 9090, 50001, 50002, 50005, 50006})


def free_port(avoid: Container[int] = ()) -> int:
    """A port free on 127.0.0.1 now, never one of :data:`RESERVED_PORTS` or ``avoid``."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS and port not in avoid:
            return port
    raise OSError("no free port found on 127.0.0.1 after 100 tries")


def port_available(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:``port`` (Dapr's ``portExists`` test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def exit_code(returncode: int) -> int:
    """Shell convention: a child killed by signal N gives 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class Child:
    """A process started in its own process group, its output copied line by line with a prefix."""

    name: str
    proc: asyncio.subprocess.Process
    pump: asyncio.Task[None]
    stopped_by_us: bool = field(default=False)

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        prefix: str,
        *,
        cwd: str | None = None,
        console: bool = True,
        log_file: TextIO | None = None,
    ) -> Child:
        """Start ``argv``; each output line goes, after ``prefix``, to stdout (unless not
        ``console``) and to ``log_file``."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        assert proc.stdout is not None
        sinks = ([sys.stdout] if console else []) + ([log_file] if log_file is not None else [])
        pump = asyncio.create_task(_copy_lines(proc.stdout, prefix, sinks))
        return cls(name, proc, pump)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> int:
        """Signal the whole group, wait ``grace_s``, then SIGKILL; returns the exit code."""
        if self.proc.returncode is None:
            self.stopped_by_us = True
            signal_group(self.pid, sig)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                signal_group(self.pid, signal.SIGKILL)
                await self.proc.wait()
        signal_group(self.pid, signal.SIGKILL)  # grandchildren left in the group
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pump, 2.0)
        return exit_code(self.proc.returncode or 0)


async def _copy_lines(stream: asyncio.StreamReader, prefix: str, sinks: list[TextIO]) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the buffer limit
            line = await stream.read(65536)
        if not line:
            return
        text = prefix + line.decode(errors="replace").rstrip("\r\n") + "\n"
        for out in sinks:
            with contextlib.suppress(OSError, ValueError):
                out.write(text)
                out.flush()


async def _metadata_id(port: int) -> str | None:
    """The ``id`` in daprd's ``GET /v1.0/metadata`` on 127.0.0.1:port, or None."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(b"GET /v1.0/metadata HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 2.0)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        return None
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


async def wait_daprd(port: int, app_id: str, child: Child, timeout_s: float) -> bool:
    """True once the daprd we started answers on ``port`` with our app-id; False if ``child``
    exits or time runs out (a port held by someone else never counts as ready)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if child.proc.returncode is not None:
            return False
        if await _metadata_id(port) == app_id:
            return child.proc.returncode is None
        await asyncio.sleep(0.05)
    return False
