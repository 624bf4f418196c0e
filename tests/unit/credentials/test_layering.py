"""Guard: pysentry.credentials sits below the services: it never imports sentry, sidecar, cli or
injector (it may use pki, config, fileio, watch, errors, kube and its own modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[3] / "src" / "pysentry" / "credentials"
FORBIDDEN = ("pysentry.sentry", "pysentry.sidecar", "pysentry.cli", "pysentry.injector")


def imported_names(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against pysentry.credentials
                names.append("pysentry.credentials." + (node.module or ""))
            else:
                names.append(node.module or "")
    return names


MODULES = sorted(PACKAGE.glob("*.py"))


def test_modules_found() -> None:
    assert {p.stem for p in MODULES} >= {"base", "files", "journal"}


@pytest.mark.parametrize("module", MODULES, ids=[p.stem for p in MODULES])
def test_credentials_never_import_a_service(module: Path) -> None:
    bad = [
        name
        for name in imported_names(module)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert bad == [], f"{module.name} imports {bad}: pysentry.credentials must not import upward"


def test_guard_detects_upward_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from pysentry.sentry.ca import CaSettings\nimport pysentry.cli.main\n")
    assert imported_names(sample) == ["pysentry.sentry.ca", "pysentry.cli.main"]
