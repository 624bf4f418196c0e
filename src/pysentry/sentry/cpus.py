"""How many signing processes ``sentry`` starts when ``--workers`` is not given.

The smallest of: the CPUs this process may run on (its affinity mask, which a cpuset narrows),
the CPU quota of its cgroup rounded up (a Kubernetes CPU limit: ``cpu.max`` in cgroup v2,
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in v1), and :data:`MAX_DEFAULT_WORKERS`. A Pod
limited to 500m on a 32-core node gets one process, not 32 (each costs ~50 MiB), and the quota
is not spent on processes that would only wait for it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

MAX_DEFAULT_WORKERS = 4
"""More processes than this are a choice (``--workers``): ~50 MiB each, and four already sign
about four times what one does."""
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # "max" / -1: no quota


def _own_paths(proc_cgroup: Path) -> list[tuple[str, str]]:
    """``(controllers, path)`` of this process's cgroups (``""`` controllers = cgroup v2)."""
    text = _read(proc_cgroup) or ""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2].lstrip("/")))
    return out


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path | None = None) -> float | None:
    """The CPU quota in CPUs (0.5 for 500m), or None when there is none or it cannot be read."""
    proc_cgroup = proc_cgroup or Path("/proc/self/cgroup")
    limits: list[float] = []
    for controllers, rel in _own_paths(proc_cgroup):
        if controllers == "":  # v2: the process's own cgroup, else the namespace's root
            for base in {root / rel, root}:
                parts = (_read(base / "cpu.max") or "").split()
                if len(parts) == 2 and (r := _ratio(parts[0], parts[1])) is not None:
                    limits.append(r)
        elif "cpu" in controllers.split(","):
            for mount in {root / "cpu", root / "cpu,cpuacct", root / controllers}:
                for base in {mount / rel, mount}:
                    quota = _read(base / "cpu.cfs_quota_us")
                    period = _read(base / "cpu.cfs_period_us")
                    if quota and period and (r := _ratio(quota, period)) is not None:
                        limits.append(r)
    return min(limits) if limits else None


def default_workers(root: Path = CGROUP_ROOT, proc_cgroup: Path | None = None) -> int:
    count = min(affinity_cpus(), MAX_DEFAULT_WORKERS)
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        count = min(count, max(1, math.ceil(limit - 1e-9)))
    return count
