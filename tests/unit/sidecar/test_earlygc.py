"""daprd's collector is off from its first import, and only in daprd (issue 13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = (
    "import gc, sys\n"
    "import pysentry.sidecar.main\n"
    "print(gc.isenabled(), 'asyncio' in sys.modules)\n"
)
# asyncio is not imported by pysentry.sidecar.main: the first identity is requested without it.


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_the_daprd_script_imports_with_the_collector_off(tmp_path: Path) -> None:
    script = tmp_path / "daprd"
    script.write_text(PROBE)
    assert run([sys.executable, str(script)]) == "False False"


def test_a_process_that_imports_the_sidecar_keeps_its_collector(tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text(PROBE)
    assert run([sys.executable, str(script)]) == "True False"
    assert run([sys.executable, "-c", PROBE]) == "True False"


def test_python_m_sidecar_main_counts_as_daprd() -> None:
    """``dapr run`` starts ``python -m pysentry.sidecar.main``: ``__main__`` has that spec."""
    code = (
        "import gc, importlib.util, sys\n"
        "sys.modules['__main__'].__spec__ = importlib.util.find_spec('pysentry.sidecar.main')\n"
        "import pysentry.sidecar.earlygc\n"
        "print(gc.isenabled())\n"
    )
    assert run([sys.executable, "-c", code]) == "False"
