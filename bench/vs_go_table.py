"""Medians, ratios and the goal table of ``bench/vs_go.py`` (issue 13's goals)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

GOAL_RATE = 1000
SUSTAINED = 0.98  # "sustained": at least 98% of the planned rate came back 200
READY_GOAL_S = 0.15
#: ``--baseline-src``'s target: pysentry from another source tree, for a before/after.
BASE = "pysentry-base"


def brief(row: dict[str, Any]) -> str:
    """One progress line for a measurement."""
    if "error" in row:
        return f"ERROR {row['error'].splitlines()[0][:200]}"
    r = row["result"]
    keys = (
        "rps",
        "achieved_rps",
        "certs_per_s",
        "p50_ms",
        "p99_ms",
        "errors",
        "cpu_ms_per_request",
        "cpu_ms_per_cert",
        "identity_ready_s",
        "outbound_ready_s",
    )
    parts = [
        f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys if k in r
    ]
    if "daprd_memory" in r:
        parts.append(f"daprd_rss={r['daprd_memory']['rss_kib'] / 1024:.1f}MiB")
        parts.append(f"sentry_rss={r['sentry_memory']['rss_kib'] / 1024:.1f}MiB")
    return " ".join(parts) + f" (load {row['loadavg_start']}->{row['loadavg_end']})"


def _median(
    case: dict[str, Any], target: str, get: Callable[[dict[str, Any]], Any]
) -> float | None:
    values = [
        get(row["result"])
        for row in case["reps"]
        if row["target"] == target and "result" in row and get(row["result"]) is not None
    ]
    return round(statistics.median(values), 4) if values else None


def _sum(case: dict[str, Any], target: str, key: str) -> int | None:
    rows = [r for r in case["reps"] if r["target"] == target and "result" in r]
    return sum(int(r["result"][key]) for r in rows) if rows else None


def _errors(case: dict[str, Any], target: str) -> list[str]:
    return [r["error"] for r in case["reps"] if r["target"] == target and "error" in r]


def summarize(cases: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per target ("direct", "go", "pysentry"): the medians each table row needs."""
    out: dict[str, dict[str, Any]] = {}
    for target in ("direct", "go", "pysentry", BASE):
        s: dict[str, Any] = {}
        if "startup" in cases and target != "direct":
            c = cases["startup"]
            s["identity_ready_s"] = _median(c, target, lambda r: r["identity_ready_s"])
            s["outbound_ready_s"] = _median(c, target, lambda r: r["outbound_ready_s"])
            s["daprd_rss_mib"] = _median(c, target, lambda r: r["daprd_memory"]["rss_kib"] / 1024)
            s["sentry_rss_mib"] = _median(c, target, lambda r: r["sentry_memory"]["rss_kib"] / 1024)
            s["daprd_pss_mib"] = _median(c, target, lambda r: r["daprd_memory"]["pss_kib"] / 1024)
            s["sentry_pss_mib"] = _median(c, target, lambda r: r["sentry_memory"]["pss_kib"] / 1024)
            s["daprd_processes"] = _median(c, target, lambda r: r["daprd_memory"]["processes"])
            s["sentry_processes"] = _median(c, target, lambda r: r["sentry_memory"]["processes"])
        c = cases.get("invoke_max", {"reps": []})  # every key, for a run of some --cases
        s["max_rps"] = _median(c, target, lambda r: r["rps"])
        s["max_errors"] = _sum(c, target, "errors")
        for rate in (200, GOAL_RATE):
            c = cases.get(f"invoke_{rate}rps", {"reps": []})
            s[f"p50_ms_{rate}"] = _median(c, target, lambda r: r["p50_ms"])
            s[f"p99_ms_{rate}"] = _median(c, target, lambda r: r["p99_ms"])
            s[f"achieved_rps_{rate}"] = _median(c, target, lambda r: r["achieved_rps"])
            s[f"errors_{rate}"] = _sum(c, target, "errors")
            s[f"cpu_ms_per_request_{rate}"] = _median(c, target, lambda r: r["cpu_ms_per_request"])
        for conc in (16, 128):
            c = cases.get(f"sentry_c{conc}", {"reps": []})
            s[f"certs_per_s_c{conc}"] = _median(c, target, lambda r: r["certs_per_s"])
            s[f"cpu_ms_per_cert_c{conc}"] = _median(c, target, lambda r: r["cpu_ms_per_cert"])
            s[f"sentry_errors_c{conc}"] = _sum(c, target, "errors")
        s["failures"] = {
            name: _errors(c, target) for name, c in cases.items() if _errors(c, target)
        }
        out[target] = s
    for target in ("go", "pysentry", BASE):
        for q in ("p50", "p99"):
            mine, base = out[target][f"{q}_ms_200"], out["direct"][f"{q}_ms_200"]
            added = None if mine is None or base is None else round(mine - base, 3)
            out[target][f"added_{q}_ms_200"] = added
    return out


def _fmt(v: float | None, unit: str = "", digits: int = 0, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+,.{digits}f}{unit}" if sign else f"{v:,.{digits}f}{unit}"


def _sustained(achieved: float | None, errors: int | None) -> str:
    return "n/a" if achieved is None else f"{_fmt(achieved)}/s, {errors or 0:,} err"


def _ratio(ours: float | None, go: float | None) -> float | None:
    if ours is None or go is None or go == 0:
        return None
    return ours / go


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def rows(summary: dict[str, dict[str, Any]]) -> list[list[str]]:
    go, py = summary["go"], summary["pysentry"]
    table: list[list[str]] = []

    def add(
        metric: str,
        g: float | None,
        p: float | None,
        fmt: Callable[[float | None], str],
        goal: str,
        check: Callable[[float | None, float | None], bool | None],
    ) -> None:
        r = _ratio(p, g)
        table.append(
            [metric, fmt(g), fmt(p), "n/a" if r is None else f"{r:.2f}", goal, _met(check(p, g))]
        )

    def ratio_at_least(k: float) -> Callable[[float | None, float | None], bool | None]:
        return lambda p, g: None if _ratio(p, g) is None else _ratio(p, g) >= k  # type: ignore[operator]

    def ratio_at_most(k: float) -> Callable[[float | None, float | None], bool | None]:
        return lambda p, g: None if _ratio(p, g) is None else _ratio(p, g) <= k  # type: ignore[operator]

    def none(p: float | None, g: float | None) -> bool | None:
        return None

    rps = lambda v: _fmt(v, "")  # noqa: E731
    ms = lambda v: _fmt(v, " ms", 2, sign=True)  # noqa: E731
    add(
        "invoke, max req/s (wrk -t2 -c16, 1 KB POST)",
        go["max_rps"],
        py["max_rps"],
        rps,
        "≥ 1.5 x Go",
        ratio_at_least(1.5),
    )
    add(
        "invoke, added p50 at 200 rps (vegeta)",
        go["added_p50_ms_200"],
        py["added_p50_ms_200"],
        ms,
        "—",
        none,
    )
    add(
        "invoke, added p99 at 200 rps (vegeta)",
        go["added_p99_ms_200"],
        py["added_p99_ms_200"],
        ms,
        "≤ Go",
        lambda p, g: None if p is None or g is None else p <= g,
    )
    ach = f"achieved_rps_{GOAL_RATE}"
    err = f"errors_{GOAL_RATE}"
    table.append(
        [
            f"invoke, {GOAL_RATE:,} rps: achieved/s, errors",
            _sustained(go[ach], go[err]),
            _sustained(py[ach], py[err]),
            "n/a" if _ratio(py[ach], go[ach]) is None else f"{_ratio(py[ach], go[ach]):.2f}",
            "sustained, 0 errors",
            _met(None if py[ach] is None else py[ach] >= SUSTAINED * GOAL_RATE and py[err] == 0),
        ]
    )
    add(
        f"CPU of both sidecars per request at {GOAL_RATE:,} rps",
        go[f"cpu_ms_per_request_{GOAL_RATE}"],
        py[f"cpu_ms_per_request_{GOAL_RATE}"],
        lambda v: _fmt(v, " ms", 2),
        "≤ 0.8 x Go",
        ratio_at_most(0.8),
    )
    for c in (16, 128):
        add(
            f"Sentry certs/s at c={c} (ghz, TLS)",
            go[f"certs_per_s_c{c}"],
            py[f"certs_per_s_c{c}"],
            rps,
            "≥ Go",
            ratio_at_least(1.0),
        )
    for c in (16, 128):
        add(
            f"Sentry CPU per certificate at c={c}",
            go[f"cpu_ms_per_cert_c{c}"],
            py[f"cpu_ms_per_cert_c{c}"],
            lambda v: _fmt(v, " ms", 2),
            "—",
            none,
        )
    add(
        "daprd, exec → identity ready",
        go.get("identity_ready_s"),
        py.get("identity_ready_s"),
        lambda v: _fmt(v, " s", 3),
        f"≤ {READY_GOAL_S} s",
        lambda p, g: None if p is None else p <= READY_GOAL_S,
    )
    for what in ("daprd", "sentry"):
        add(
            f"idle RSS, {what}",
            go.get(f"{what}_rss_mib"),
            py.get(f"{what}_rss_mib"),
            lambda v: _fmt(v, " MiB", 1),
            "≤ 1.1 x Go",
            ratio_at_most(1.1),
        )
        for col, side in ((1, go), (2, py)):  # several processes: say so, with their PSS
            if (side.get(f"{what}_processes") or 1) > 1:
                pss = _fmt(side.get(f"{what}_pss_mib"), " MiB", 1)
                table[-1][col] += f" ({side[f'{what}_processes']:.0f} procs, PSS {pss})"
    return table


def render(summary: dict[str, dict[str, Any]], report: dict[str, Any]) -> str:
    head = ["metric", "Go Dapr", "pysentry", "ours/Go", "goal", "met?"]
    body = rows(summary)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)]
    d = summary["direct"]
    out.append(
        f"direct app baseline (no sidecars): max {_fmt(d['max_rps'])} req/s; at 200 rps p50/p99 "
        f"{_fmt(d['p50_ms_200'], ' ms', 2)} / {_fmt(d['p99_ms_200'], ' ms', 2)}; "
        f"at {GOAL_RATE:,} rps {_fmt(d[f'achieved_rps_{GOAL_RATE}'])}/s"
    )
    s = report["settings"]
    out.append(
        f"medians of {s['reps']} interleaved repetitions of {s['seconds']:g} s; mTLS on and the "
        "callee's ACL checked on every call, for both; "
        f"1-min load average {report['loadavg_before'][0]:.2f} before, "
        f"{report['loadavg_after'][0]:.2f} after"
    )
    v = report["versions"]
    out.append(
        f"versions: Dapr {v['dapr']} ({v['go']}), pysentry {v['pysentry']}; "
        f"{v['wrk']}, ghz {v['ghz']}, vegeta {v['vegeta']}"
    )
    b, p = summary.get(BASE), summary["pysentry"]
    if b is not None and any(v is not None for k, v in b.items() if k != "failures"):
        out.append(
            f"{BASE} ({s.get('baseline_src')}) -> pysentry: max {_fmt(b['max_rps'])} -> "
            f"{_fmt(p['max_rps'])} req/s; added p50/p99 at 200 rps "
            f"{_fmt(b['added_p50_ms_200'], ' ms', 2, sign=True)}/"
            f"{_fmt(b['added_p99_ms_200'], ' ms', 2, sign=True)} -> "
            f"{_fmt(p['added_p50_ms_200'], ' ms', 2, sign=True)}/"
            f"{_fmt(p['added_p99_ms_200'], ' ms', 2, sign=True)}; CPU per request at "
            f"{GOAL_RATE:,} rps {_fmt(b[f'cpu_ms_per_request_{GOAL_RATE}'], ' ms', 3)} -> "
            f"{_fmt(p[f'cpu_ms_per_request_{GOAL_RATE}'], ' ms', 3)}"
        )
    out.append(f"command: {report['command']}")
    for target in ("go", "pysentry", BASE):
        for case, errors in summary.get(target, {}).get("failures", {}).items():
            out.append(f"{target} {case}: {len(errors)} failed: {errors[0].splitlines()[0][:300]}")
    return "\n".join(out)
