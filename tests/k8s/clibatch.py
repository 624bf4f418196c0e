"""Run several ``dapr`` commands in one Python process (one start-up instead of one each).

``python -m tests.k8s.clibatch`` reads a JSON list of ``{"args": [...], "kubeconfig": path|null}``
on stdin, runs each through ``pysentry.cli.main.main`` with ``KUBECONFIG`` set (or unset) and its
own stdout/stderr, and prints a JSON list of ``{"returncode", "stdout", "stderr"}``. The CLI keeps
no state between commands but the ``--log-as-json`` switch, which is reset each time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

from pysentry.cli import console
from pysentry.cli.main import main as dapr_main


def run_one(args: list[str], kubeconfig: str | None) -> dict[str, object]:
    os.environ.pop("KUBECONFIG", None)
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = kubeconfig
    console._json = False
    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            dapr_main(args)
        except SystemExit as exc:
            code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        err.write(f"{code}\n")
        code = 1
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    calls = json.load(sys.stdin)
    results = [run_one(list(c["args"]), c["kubeconfig"]) for c in calls]
    sys.__stdout__.write(json.dumps(results))  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
