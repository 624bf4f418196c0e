"""The running sidecars, found as Dapr's CLI finds them (``pkg/standalone/list.go``).

A sidecar is a process named ``daprd`` (our daprd names itself so) of this installation
(registered in its name resolution database, or whose ``$HOME/.dapr`` or ``$DAPR_HOME`` is this
Dapr directory: Dapr's CLI lists every daprd on the host); its flags come from its
command line, ``cliPID``/``appPID``/``appCommand``/… from ``extended`` in its metadata API. The
name resolution database adds pysentry's extras (namespace, SPIFFE ID, certificate expiry,
metrics port) by PID, and brings in a registered sidecar whose process name could not be set.
Linux only (``/proc``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pysentry.cli import metaclient
from pysentry.cli.nrread import read_registrations, settings_for
from pysentry.config.quantity import parse_byte_quantity
from pysentry.errors import ConfigError
from pysentry.nameresolution import Registration

PROC = Path("/proc")
DEFAULT_HTTP_PORT = 3500  # Dapr's runtime.DefaultDaprHTTPPort
DEFAULT_GRPC_PORT = 50001  # runtime.DefaultDaprAPIGRPCPort
DEFAULT_BODY = 4 << 20  # runtime.DefaultMaxRequestBodySize
DEFAULT_READ_BUFFER = 4 << 10  # runtime.DefaultReadBufferSize


@dataclass(frozen=True, slots=True)
class Sidecar:
    app_id: str
    daprd_pid: int
    args: dict[str, str]
    created: datetime
    extended: dict[str, str] = field(default_factory=dict)
    registration: Registration | None = None

    def _int(self, flag: str, default: int) -> int:
        try:
            return int(self.args[flag])
        except (KeyError, ValueError):
            return default

    @property
    def http_port(self) -> int:
        if "--dapr-http-port" in self.args or self.registration is None:
            return self._int("--dapr-http-port", DEFAULT_HTTP_PORT)
        return self.registration.http_port or DEFAULT_HTTP_PORT

    @property
    def grpc_port(self) -> int:
        return self._int("--dapr-grpc-port", DEFAULT_GRPC_PORT)

    @property
    def app_port(self) -> int:
        if "--app-port" in self.args or self.registration is None:
            return self._int("--app-port", 0)
        return self.registration.app_port

    @property
    def metrics_enabled(self) -> bool:
        return self.args.get("--enable-metrics", "true").lower() not in ("false", "0", "f")

    def _bytes(self, flag: str, default: int) -> int:
        try:
            return parse_byte_quantity(self.args[flag], flag=flag[2:])
        except (KeyError, ConfigError):
            return default

    @property
    def max_request_body_size(self) -> int:
        return self._bytes("--max-body-size", DEFAULT_BODY)

    @property
    def http_read_buffer_size(self) -> int:
        return self._bytes("--read-buffer-size", DEFAULT_READ_BUFFER)

    def ext_int(self, key: str) -> int:
        try:
            return int(self.extended.get(key, ""))
        except ValueError:
            return 0

    @property
    def cli_pid(self) -> int:
        return self.ext_int("cliPID")

    @property
    def app_pid(self) -> int:
        return self.ext_int("appPID")


def parse_flags(argv: list[str]) -> dict[str, str]:
    """Dapr's parse of a daprd command line: ``--k=v``, ``--k v``, or ``--k`` alone ("")."""
    items = [
        "-" + a if a.startswith("-") and not a.startswith("--") and len(a) > 2 else a
        for a in argv[1:]
    ]
    out: dict[str, str] = {}
    i = 0
    while i < len(items):
        item = items[i]
        key, eq, value = item.partition("=")
        if eq:
            out[key] = value
            i += 1
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            out[item] = items[i + 1]
            i += 2
        else:
            out[item] = ""
            i += 1
    return out


def _boot_time() -> float:
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _start_time(pid: int, boot: float) -> datetime:
    stat = (PROC / str(pid) / "stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def _process(pid: int, boot: float) -> tuple[list[str], datetime] | None:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]], _start_time(pid, boot)
    except (OSError, ValueError, IndexError):
        return None


def home_of(pid: int) -> Path | None:
    """The Dapr directory of a process: ``$DAPR_HOME``, else ``$HOME/.dapr`` (None: unknown)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    env = dict(item.partition(b"=")[::2] for item in raw.split(b"\0") if item)
    if env.get(b"DAPR_HOME"):
        return Path(os.fsdecode(env[b"DAPR_HOME"])).absolute()
    if env.get(b"HOME"):
        return Path(os.fsdecode(env[b"HOME"])) / ".dapr"
    return None


def daprd_pids() -> list[int]:
    """PIDs of processes named ``daprd`` (Dapr's test: the executable's base name)."""
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip().lower()
        except OSError:
            continue
        if name in ("daprd", "daprd.exe"):
            pids.append(int(entry.name))
    return sorted(pids)


def discover(config: Path, dapr_root: Path, *, with_metadata: bool = True) -> list[Sidecar]:
    """Every running sidecar of this installation with an app-id, ordered by PID: registered
    in its name resolution database, or started with this Dapr directory as home."""
    registrations = {r.pid: r for r in read_registrations(settings_for(config, dapr_root))}
    boot = _boot_time()
    found: list[Sidecar] = []
    pids = daprd_pids()
    for pid in pids + sorted(p for p in registrations if p > 0 and p not in pids):
        proc = _process(pid, boot)
        if proc is None:
            continue
        argv, created = proc
        args = parse_flags(argv)
        reg = registrations.get(pid)
        if reg is None and home_of(pid) != dapr_root.absolute():
            continue  # another installation's sidecar (another HOME or user)
        app_id = args.get("--app-id", "") or (reg.app_id if reg else "")
        if app_id:
            found.append(Sidecar(app_id, pid, args, created, registration=reg))
    if with_metadata and found:
        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            exts = list(pool.map(lambda s: metaclient.extended(s.http_port), found))
        found = [
            Sidecar(s.app_id, s.daprd_pid, s.args, s.created, ext, s.registration)
            for s, ext in zip(found, exts, strict=True)
        ]
    return found
