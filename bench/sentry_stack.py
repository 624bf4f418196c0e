"""Where a Sentry certificate's CPU goes: the signing pipeline alone, and two Python gRPC stacks
around it, against Go's Sentry (issue 13's "Sentry certs/s" goal). Opt-in; not a test.

Every gRPC target is one process, loaded by ``ghz`` at ``-c C --connections C`` over TLS with
the same distinct token-less requests as ``bench/vs_go.py``, in interleaved repetitions:

* ``go``: Go Dapr v1.16's ``sentry`` (``bench/tools.py`` builds it, as the interop tests do);
* ``pysentry``: our ``sentry --workers 1`` (grpclib on h2, the stack DESIGN.md names);
* ``grpcio-pipeline``: grpcio's asyncio server (HTTP/2 and TLS in its C core) running our
  signing pipeline (:class:`~pysentry.sentry.ca.CertificateAuthority`, insecure validator);
* ``grpcio-fixed``: the same grpcio server answering a pre-encoded response: that stack's floor
  per call, with no signing at all.

It also times the pipeline with no transport (parse the request, check the CSR, sign, encode
the response) on this process's CPU: ``pipeline-only``. The table gives the medians of
certificates/s and of the target's CPU milliseconds per certificate (``/proc``, the process and
its threads), and each against Go. The 1-minute load average is recorded.

    .venv/bin/python bench/sentry_stack.py [--reps 3] [--seconds 5] [--concurrency 16]
                                          [--out bench/results/sentry_stack.json]

Like ``bench/vs_go.py`` it runs in a private network namespace with only loopback (root), or
with ``--host-network`` on the host's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

import tools as bench_tools  # noqa: E402
import vs_go_load as load  # noqa: E402
from vs_go_procs import BIN, Proc, Procs  # noqa: E402
from vs_go_stack import Impl, start_sentry  # noqa: E402

from pysentry.pki.bundle import CaBundle  # noqa: E402
from pysentry.pki.keys import dump_private_key, generate_key  # noqa: E402
from pysentry.pki.pem import dump_certificates  # noqa: E402
from pysentry.proto.dapr.proto.sentry.v1 import sentry_pb2 as pb  # noqa: E402
from pysentry.sentry.ca import CaSettings, CertificateAuthority  # noqa: E402
from pysentry.sentry.server import to_response, to_sign_request  # noqa: E402
from pysentry.sentry.validators import InsecureValidator, TokenValidator  # noqa: E402
from pysentry.spiffe import SpiffeId, TrustDomain  # noqa: E402
from pysentry.testing import TestCA  # noqa: E402

SERVICE, METHOD = "dapr.proto.sentry.v1.CA", "SignCertificate"
TARGETS = ("go", "pysentry", "grpcio-pipeline", "grpcio-fixed")
PIPELINE_ROUNDS = 3000


def authority(bundle: CaBundle) -> CertificateAuthority:
    settings = CaSettings(trust_domain=TrustDomain.parse("localhost"), namespace="default")
    return CertificateAuthority(
        bundle,
        settings,
        validators={TokenValidator.INSECURE: InsecureValidator()},
        default_validator=TokenValidator.INSECURE,
    )


def sign_once(ca: CertificateAuthority, request: bytes) -> bytes:
    """The pipeline on one request's bytes: what each gRPC target wraps (no awaits inside)."""
    signing = ca.sign(to_sign_request(pb.SignCertificateRequest.FromString(request)))
    try:
        signing.send(None)
    except StopIteration as done:
        return bytes(to_response(done.value).SerializeToString())
    raise RuntimeError("the signing pipeline awaited: it is no longer synchronous")


def request_bytes(data_file: Path) -> list[bytes]:
    rows = json.loads(data_file.read_text())
    return [
        pb.SignCertificateRequest(
            id=r["id"],
            namespace=r["namespace"],
            trust_domain=r["trust_domain"],
            certificate_signing_request=base64.b64decode(r["certificate_signing_request"]),
        ).SerializeToString()
        for r in rows
    ]


def pipeline_cpu_ms(ca: CertificateAuthority, requests: list[bytes]) -> float:
    for r in requests[:50]:
        sign_once(ca, r)
    started = time.process_time()
    for i in range(PIPELINE_ROUNDS):
        sign_once(ca, requests[i % len(requests)])
    return 1000 * (time.process_time() - started) / PIPELINE_ROUNDS


# --- the grpcio server (a child process: ``--serve``) -------------------------------------------
async def serve(mode: str, creds: Path, port_file: Path) -> None:
    import grpc  # type: ignore[import-untyped]

    bundle = CaBundle.from_pem(
        *((creds / name).read_bytes() for name in ("ca.crt", "issuer.crt", "issuer.key")),
        now=datetime.now(UTC),
    )
    signer = authority(bundle)
    key = generate_key()
    sentry_id = SpiffeId.parse("spiffe://localhost/ns/default/dapr-sentry")
    leaf = signer.sign_identity(key.public_key(), sentry_id, dns_names=("localhost",))
    chain = (leaf.leaf, *bundle.issuer_chain)
    fixed = sign_once(signer, request_bytes(port_file.parent / "sign-requests.json")[0])

    async def handler(request: bytes, context: Any) -> bytes:
        return fixed if mode == "grpcio-fixed" else sign_once(signer, request)

    server = grpc.aio.server()
    rpc = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: rpc}),))
    tls = grpc.ssl_server_credentials([(dump_private_key(key), dump_certificates(chain))])
    port = server.add_secure_port("127.0.0.1:0", tls)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    port_file.write_text(str(port))
    await stop.wait()
    await server.stop(None)


def start_grpcio(procs: Procs, mode: str, creds: Path) -> tuple[Proc, int]:
    port_file = procs.tmp / f"{mode}.port"
    cmd = [sys.executable, __file__, "--serve", mode, "--creds", str(creds)]
    proc = procs.spawn(mode, [*cmd, "--port-file", str(port_file)])
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{mode} server did not start:\n{proc.text()}")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


# --- the run ---------------------------------------------------------------------------------
def run(args: argparse.Namespace, tools: bench_tools.Tools, tmp: Path) -> dict[str, Any]:
    ca = TestCA.create("localhost")
    creds = tmp / "creds"
    creds.mkdir(mode=0o700)
    ca.write_credentials(creds)
    data = load.sign_requests(tmp, 64)
    requests = request_bytes(data)
    procs = Procs(tmp)
    try:
        targets: dict[str, tuple[Proc, int]] = {}
        go = start_sentry(procs, Impl("go", tools.go_sentry, tools.go_daprd), creds, "go")
        targets["go"] = (go.proc, go.port)
        ours = Impl("pysentry", BIN / "sentry", BIN / "daprd", sentry_args=("--workers", "1"))
        mine = start_sentry(procs, ours, creds, "pysentry")
        targets["pysentry"] = (mine.proc, mine.port)
        for mode in ("grpcio-pipeline", "grpcio-fixed"):
            targets[mode] = start_grpcio(procs, mode, creds)
        for _, port in targets.values():  # warm-up: connections, caches
            load.ghz(tools.ghz, data, port, 4, 1, [])
        reps: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        pipeline: list[float] = []
        for rep in range(args.reps):
            for name, (proc, port) in targets.items():
                before = os.getloadavg()[0]
                r = load.ghz(tools.ghz, data, port, args.concurrency, args.seconds, [proc.pid])
                r["load"] = [before, os.getloadavg()[0]]
                reps[name].append(r)
                print(
                    f"  rep {rep} {name}: certs_per_s={r['certs_per_s']} "
                    f"cpu_ms_per_cert={r['cpu_ms_per_cert']} errors={r['errors']} "
                    f"(load {before:.2f})",
                    flush=True,
                )
            pipeline.append(pipeline_cpu_ms(authority(ca.bundle), requests))
        return {"reps": reps, "pipeline_cpu_ms": pipeline}
    finally:
        procs.stop_all()


def median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def table(result: dict[str, Any], concurrency: int) -> str:
    go_reps = result["reps"]["go"]
    go_rate = median([r["certs_per_s"] for r in go_reps])
    go_cpu = median([r["cpu_ms_per_cert"] for r in go_reps])
    rows = [("target", "certs/s", "vs Go", "CPU ms/cert", "vs Go", "errors")]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "n/a"

    for name in TARGETS:
        reps = result["reps"][name]
        rate = median([r["certs_per_s"] for r in reps])
        cpu = median([r["cpu_ms_per_cert"] for r in reps])
        errors = sum(r["errors"] for r in reps)
        rows.append(
            (
                name,
                f"{rate:,.0f}" if rate is not None else "n/a",
                ratio(rate, go_rate),
                f"{cpu:.3f}" if cpu is not None else "n/a",
                ratio(cpu, go_cpu),
                str(errors),
            )
        )
    cpu = median(result["pipeline_cpu_ms"])
    rows.append(("pipeline-only", "", "", f"{cpu:.3f}" if cpu else "n/a", ratio(cpu, go_cpu), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"ghz -c {concurrency} --connections {concurrency}, TLS; medians of the reps")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sentry_stack.json")
    bench_tools.netns_flags(ap)
    ap.add_argument("--serve", choices=("grpcio-pipeline", "grpcio-fixed"), help=argparse.SUPPRESS)
    ap.add_argument("--creds", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.creds, args.port_file))
        return 0
    tools = bench_tools.tools_on_loopback(__file__, argv, args)
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-sentry-stack-") as tmpdir:
        result = run(args, tools, Path(tmpdir))
    loads.append(os.getloadavg()[0])
    report = {
        "benchmark": "sentry_stack",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "args": {k: v for k, v in vars(args).items() if k in ("reps", "seconds", "concurrency")},
        "load_average_1min": loads,
        **result,
    }
    print(table(result, args.concurrency))
    print(f"1-min load average {loads[0]:.2f} before, {loads[1]:.2f} after")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
