"""The default ``--workers``: affinity, the cgroup CPU limit (v1 and v2) and the cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysentry.sentry import cpus
from pysentry.sentry.cpus import MAX_DEFAULT_WORKERS, cgroup_cpu_limit, default_workers


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        ("0::/kubepods/pod1/c1\n", {"fs/kubepods/pod1/c1/cpu.max": "50000 100000\n"}, 0.5),
        ("0::/\n", {"fs/cpu.max": "250000 100000\n"}, 2.5),  # cgroup namespace: the root
        ("0::/a\n", {"fs/a/cpu.max": "max 100000\n"}, None),
        (
            "4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n",
            {
                "fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "150000\n",
                "fs/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            1.5,
        ),
        (  # v1 without a cgroup namespace: the container's own cgroup is the mount's root
            "3:cpu:/docker/abc\n",
            {"fs/cpu/cpu.cfs_quota_us": "200000", "fs/cpu/cpu.cfs_period_us": "100000"},
            2.0,
        ),
        (
            "3:cpu:/\n",
            {"fs/cpu/cpu.cfs_quota_us": "-1", "fs/cpu/cpu.cfs_period_us": "100000"},
            None,
        ),
        ("0::/\n", {"fs/cpu.max": "garbage\n"}, None),
        ("0::/\n", {}, None),
    ],
)
def test_cgroup_cpu_limit(
    tmp_path: Path, proc: str, files: dict[str, str], expected: float | None
) -> None:
    root = _tree(tmp_path, {"proc-cgroup": proc, **files})
    assert cgroup_cpu_limit(root / "fs", root / "proc-cgroup") == expected


def test_missing_proc_file_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        (32, "50000 100000", 1),  # 500m on a big node: one process
        (32, "150000 100000", 2),  # 1.5 CPUs: rounded up
        (32, "max 100000", MAX_DEFAULT_WORKERS),  # no limit: capped
        (2, "max 100000", 2),
        (2, "800000 100000", 2),  # the affinity mask is smaller than the quota
    ],
)
def test_default_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, affinity: int, quota: str, expected: int
) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: affinity)
    root = _tree(tmp_path, {"proc-cgroup": "0::/\n", "fs/cpu.max": quota})
    assert default_workers(root / "fs", root / "proc-cgroup") == expected
