"""Guard: pysentry.pki stays pure (no asyncio, socket, ssl, os, logging or generated protobuf)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKI = Path(__file__).parents[3] / "src" / "pysentry" / "pki"
FORBIDDEN = (
    "asyncio",
    "socket",
    "ssl",
    "os",
    "logging",
    "pysentry.proto",
    "google.protobuf",
    "subprocess",
    "threading",
    "pathlib",
    "pysentry.fileio",
    "pysentry.security",
    "pysentry.sentry",
    "pysentry.sidecar",
    "pysentry.cli",
)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("pysentry.pki." + (node.module or ""))
            else:
                names.append(node.module or "")
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.append("__import__")
    return names


def _forbidden(name: str) -> bool:
    return name == "__import__" or any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


MODULES = sorted(PKI.glob("*.py"))


def test_modules_found() -> None:
    assert {p.stem for p in MODULES} >= {"keys", "csr", "pem", "profiles", "bundle", "svid"}


@pytest.mark.parametrize("module", MODULES, ids=[p.stem for p in MODULES])
def test_pki_module_is_pure(module: Path) -> None:
    bad = [name for name in _imports(module) if _forbidden(name)]
    assert bad == [], f"{module.name} imports {bad}: pysentry.pki must stay free of I/O"


def test_guard_detects_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom asyncio import run\nfrom logging import getLogger\n")
    assert [n for n in _imports(sample) if _forbidden(n)] == [
        "os.path",
        "asyncio",
        "asyncio.run",
        "logging",
        "logging.getLogger",
    ]
