"""The crypto ceiling on this machine: how fast can one core sign workload SVIDs?

Quick Python-only check (not the Go comparison: that is bench/vs_go.py, `make bench-go`).

Two numbers for each issuer key type (P-256, Ed25519) and CSR key type (P-256, Ed25519):
  sign      ``workload_certificate`` only (public key already parsed)
  csr+sign  ``parse_csr`` (PEM decode, parse, proof-of-possession check) + ``workload_certificate``
Each is measured in several repetitions; the table and JSON report medians.

    .venv/bin/python bench/pki.py [--seconds 20] [--out bench/results/pki.json]

Other benchmarks import it (bench/ is not a package)::

    sys.path.insert(0, "bench"); import pki as pki_bench
    ceiling = pki_bench.measure_ceiling(5.0)   # ceiling["ceiling"]["csr_sign_per_s"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend

from pysentry.pki.bundle import CaBundle
from pysentry.pki.csr import build_csr, parse_csr
from pysentry.pki.keys import KeyAlgorithm, generate_key
from pysentry.pki.profiles import workload_certificate
from pysentry.spiffe import SpiffeId

ALGORITHMS = (KeyAlgorithm.EC_P256, KeyAlgorithm.ED25519)
DEFAULT_REPS = 5
DEFAULT_OUT = Path(__file__).parent / "results" / "pki.json"


def _rate(op: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``op`` run back to back for about ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            op()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _cases() -> list[tuple[str, str, str, Callable[[], object]]]:
    now = datetime.now(UTC)
    spiffe_id = SpiffeId.for_app("public", "default", "bench-app")
    cases: list[tuple[str, str, str, Callable[[], object]]] = []
    for issuer_alg in ALGORITHMS:
        bundle = CaBundle.generate("public", "dapr-system", now=now, algorithm=issuer_alg)
        for csr_alg in ALGORITHMS:
            csr_pem = build_csr(generate_key(csr_alg))
            public_key = parse_csr(csr_pem)

            def sign(pub: Any = public_key, b: CaBundle = bundle) -> object:
                return workload_certificate(
                    pub, spiffe_id, issuer_cert=b.issuer_cert, issuer_key=b.issuer_key, now=now
                )

            def csr_sign(pem: bytes = csr_pem, b: CaBundle = bundle) -> object:
                return workload_certificate(
                    parse_csr(pem),
                    spiffe_id,
                    issuer_cert=b.issuer_cert,
                    issuer_key=b.issuer_key,
                    now=now,
                )

            cases.append((str(issuer_alg), str(csr_alg), "sign", sign))
            cases.append((str(issuer_alg), str(csr_alg), "csr+sign", csr_sign))
    return cases


def measure_ceiling(seconds: float, *, reps: int = DEFAULT_REPS) -> dict[str, Any]:
    """Measure every case; ``seconds`` is the total budget, split over cases x repetitions.

    Returns ``{"results": [...], "ceiling": {"sign_per_s", "csr_sign_per_s", ...}, ...}`` where
    each result has ``issuer``, ``csr_key``, ``mode``, ``ops_per_s`` (median), ``runs`` and
    ``us_per_op``. The ceiling is the best median over issuer/CSR key types, one core.
    """
    load_before = os.getloadavg()
    cases = _cases()
    window = max(seconds / (len(cases) * reps), 0.02)
    runs: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for index, (_, _, _, op) in enumerate(cases):  # warm-up
        op()
        runs[index] = []
    for _ in range(reps):  # interleave repetitions so drift hits every case alike
        for index, (_, _, _, op) in enumerate(cases):
            runs[index].append(_rate(op, window))
    results: list[dict[str, Any]] = []
    for index, (issuer, csr_key, mode, _) in enumerate(cases):
        median = statistics.median(runs[index])
        results.append(
            {
                "issuer": issuer,
                "csr_key": csr_key,
                "mode": mode,
                "ops_per_s": round(median, 1),
                "us_per_op": round(1e6 / median, 1),
                "best_ops_per_s": round(max(runs[index]), 1),
                "runs": [round(r, 1) for r in runs[index]],
            }
        )

    def best(mode: str, issuer: str | None = None) -> float:
        return max(
            float(r["ops_per_s"])
            for r in results
            if r["mode"] == mode and (issuer is None or r["issuer"] == issuer)
        )

    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "openssl": backend.openssl_version_text(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "seconds_budget": seconds,
        "reps": reps,
        "window_s": round(window, 3),
        "results": results,
        "ceiling": {
            "sign_per_s": best("sign"),
            "csr_sign_per_s": best("csr+sign"),
            "csr_sign_per_s_p256_issuer": best("csr+sign", str(KeyAlgorithm.EC_P256)),
            "csr_sign_per_s_ed25519_issuer": best("csr+sign", str(KeyAlgorithm.ED25519)),
            "best_run_sign_per_s": max(
                float(r["best_ops_per_s"]) for r in results if r["mode"] == "sign"
            ),
            "best_run_csr_sign_per_s": max(
                float(r["best_ops_per_s"]) for r in results if r["mode"] == "csr+sign"
            ),
        },
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{'issuer':<11} {'csr key':<11} {'mode':<9} {'ops/s (median)':>15} {'us/op':>8}  runs",
    ]
    for r in report["results"]:
        runs = " ".join(f"{x:.0f}" for x in r["runs"])
        lines.append(
            f"{r['issuer']:<11} {r['csr_key']:<11} {r['mode']:<9} {r['ops_per_s']:>15.0f} "
            f"{r['us_per_op']:>8.1f}  {runs}"
        )
    c = report["ceiling"]
    lines.append(
        f"ceiling (1 core, medians): sign {c['sign_per_s']:.0f}/s, "
        f"csr+sign {c['csr_sign_per_s']:.0f}/s; best single run: sign "
        f"{c['best_run_sign_per_s']:.0f}/s, csr+sign {c['best_run_csr_sign_per_s']:.0f}/s; "
        f"load avg {report['machine']['loadavg_1m_before_after']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=16.0, help="total measuring time")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = measure_ceiling(args.seconds, reps=args.reps)
    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
