"""The Dockerfile and what runs it agree (this machine has no Docker daemon and no registry to
pull a base image from, so the image itself is not built here: docs/kubernetes.md says so).

Checked: every command the chart's Deployments and the injector's daprd container run is a
console script or module the image installs; the image's user is numeric and not root (the
chart sets ``runAsNonRoot: true``, which the kubelet can only check for a numeric user); what
the build copies is what the package build reads.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path

from pysentry.injector.patch import InjectorConfig, sidecar_container

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def runnable(command: list[str]) -> bool:
    if command[0] in SCRIPTS:
        return importlib.util.find_spec(SCRIPTS[command[0]].split(":")[0]) is not None
    if command[:2] == ["python", "-m"]:
        return importlib.util.find_spec(f"{command[2]}.__main__") is not None
    return False


def chart_commands() -> list[list[str]]:
    found = []
    for template in sorted((ROOT / "charts/pysentry/templates").glob("*.yaml")):
        for match in re.finditer(r"^\s*command:\s*(\[.*\])\s*$", template.read_text(), re.M):
            found.append(json.loads(match.group(1)))
    return found


def test_every_command_the_chart_runs_is_in_the_image() -> None:
    commands = chart_commands()
    assert sorted(c[0] if c[0] != "python" else c[2] for c in commands) == [
        "pysentry.injector",
        "sentry",
    ]
    assert all(runnable(c) for c in commands), commands


def test_the_injected_daprd_command_is_in_the_image() -> None:
    fields = InjectorConfig.__dataclass_fields__
    assert "sidecar_image" in fields or any("image" in name for name in fields)
    container = sidecar_container  # the injector builds the daprd container from this function
    source = Path(importlib.util.find_spec(container.__module__).origin or "").read_text()  # type: ignore[union-attr]
    daprd = re.search(r'"command":\s*(\[[^\]]*\])', source)
    assert daprd is not None
    assert runnable(json.loads(daprd.group(1)))


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users, "the image must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit())


def test_the_build_copies_what_the_package_build_reads() -> None:
    copied = {
        p
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, re.M)
        for p in line.split()
    }
    assert {"pyproject.toml", "constraints.txt", "src", "charts"} <= copied
    assert "-c constraints.txt" in DOCKERFILE  # the pinned versions the suite tests
