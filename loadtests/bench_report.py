"""What the benchmark concludes: the targets, the peer ratios, and the table it prints."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from loadtests.bench_product import relay_mode
from loadtests.bench_stats import cpu_us_per_event, cpu_us_per_turn, proxy_cpu

__all__ = ["evaluate_targets", "peer_ratios", "print_report", "product_vs_relay", "sustainable"]

MAX_ERROR_RATE = 0.01
TARGET_CONCURRENCY = 200


def sustainable(report: Mapping[str, Any], mode: str) -> dict[str, Any] | None:
    """The step with the most token events/s for `mode` among those under 1% errors."""
    best: dict[str, Any] | None = None
    for step in report.get("steps", []):
        run = step["modes"].get(mode)
        if run is None or run["error_rate"] >= MAX_ERROR_RATE:
            continue
        if best is None or run["token_events_per_s"] > best["token_events_per_s"]:
            best = {
                "concurrency": step["concurrency"],
                "token_events_per_s": run["token_events_per_s"],
                "turns_per_s": run["turns_per_s"],
            }
    return best


def _step(report: Mapping[str, Any], concurrency: int) -> Mapping[str, Any] | None:
    steps = report.get("steps", [])
    if not steps:
        return None
    exact = [s for s in steps if s["concurrency"] == concurrency]
    return exact[0] if exact else None


def _ratio(peer: float | None, ours: float | None) -> float | None:
    """peer / ours for costs (>1: the gateway is better); floors ours at 0.01 ms."""
    if peer is None or ours is None:
        return None
    return round(max(peer, 0.01) / max(ours, 0.01), 2)


def peer_ratios(report: Mapping[str, Any]) -> dict[str, Any] | None:
    peer = report.get("peer")
    if not peer or not peer.get("ran"):
        return None
    per_step = []
    for step in report.get("steps", []):
        ours, theirs = (
            step["added_ttft_ms"].get("gateway_http"),
            step["added_ttft_ms"].get("peer_http"),
        )
        if ours is None or theirs is None:
            continue
        per_step.append(
            {
                "concurrency": step["concurrency"],
                "gateway_added_ttft_ms": ours,
                "peer_added_ttft_ms": theirs,
                "peer_over_gateway": {q: _ratio(theirs[q], ours[q]) for q in ours},
                "gateway_cpu_percent": step["modes"]["gateway_http"]["cpu_percent"].get("gateway"),
                "peer_cpu_percent": step["modes"]["peer_http"]["cpu_percent"].get("peer"),
            }
        )
    ours_max, peer_max = sustainable(report, "gateway_http"), sustainable(report, "peer_http")
    throughput = None
    if ours_max and peer_max and peer_max["token_events_per_s"]:
        throughput = round(ours_max["token_events_per_s"] / peer_max["token_events_per_s"], 2)
    return {
        "added_ttft": per_step,
        "max_sustainable": {"gateway_http": ours_max, "peer_http": peer_max},
        "throughput_gateway_over_peer": throughput,
    }


def evaluate_targets(report: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    step = _step(report, TARGET_CONCURRENCY)
    if step is not None:
        ws = step["added_ttft_ms"]["ws"]
        # How far each could move within the run (`bench_stats.added_interval`).
        interval = (step["modes"]["ws"].get("probe") or {}).get("added_ttft_interval_ms") or {}
        out["added_ttft_p50_le_1ms_at_200"] = {
            "value": ws["p50"],
            "interval_95": interval.get("p50"),
            "met": _le(ws["p50"], 1.0),
        }
        out["added_ttft_p99_le_5ms_at_200"] = {
            "value": ws["p99"],
            "interval_95": interval.get("p99"),
            "met": _le(ws["p99"], 5.0),
        }
    best = sustainable(report, "ws")
    workers = report.get("meta", {}).get("gateway_workers", 1)
    value = round(best["token_events_per_s"] / workers, 1) if best else None
    out["token_events_per_s_ge_10000"] = {
        "value": value,
        "per_worker_of": workers,
        "met": value is not None and value >= 1e4,
    }
    idle = report.get("idle")
    if idle:
        kib = idle["rss_per_session_kib"]
        out["idle_rss_le_50kib"] = {"value": kib, "met": _le(kib, 50.0)}
    errors = {
        str(s["concurrency"]): s["modes"]["ws"]["error_rate"] for s in report.get("steps", [])
    }
    out["ws_error_rate_by_step"] = errors
    comparison = report.get("peer_comparison")
    if comparison:
        out["better_than_peer"] = _better_than_peer(comparison)
    out.update(_product_targets(report))
    return out


def _over(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, each floored at 0.01 (a relay figure near zero must not explode it)."""
    if ours is None or theirs is None:
        return None
    return round(max(ours, 0.01) / max(theirs, 0.01), 2)


def product_vs_relay(step: Mapping[str, Any]) -> dict[str, Any]:
    """Per product run of a step: its added TTFT and CPU per token over the relay run of the
    same route, and its assessment backlog (issue 26's targets: p50 <= 1.5x, p99 <= 2x, CPU
    <= 1.2x, drained within 30 s)."""
    out: dict[str, Any] = {}
    for mode, run in step["modes"].items():
        if "assessment_backlog" not in run or relay_mode(mode) not in step["modes"]:
            continue
        relay = relay_mode(mode)
        ours, theirs = step["added_ttft_ms"][mode], step["added_ttft_ms"][relay]
        cpu = step["cpu_us_per_event"]
        backlog = run["assessment_backlog"]
        out[mode] = {
            "relay": relay,
            "added_p50_ms": [ours["p50"], theirs["p50"]],
            "added_p99_ms": [ours["p99"], theirs["p99"]],
            "cpu_us_per_event": [cpu.get(mode), cpu.get(relay)],
            "p50_over_relay": _over(ours["p50"], theirs["p50"]),
            "p99_over_relay": _over(ours["p99"], theirs["p99"]),
            "cpu_over_relay": _over(cpu.get(mode), cpu.get(relay)),
            "backlog_max": backlog["max"],
            "drain_s": backlog["drain_s"],
            "cpu_us_per_turn": [cpu_us_per_turn(run), cpu_us_per_turn(step["modes"][relay])],
            "cpu_us_per_turn_by_part": _parts_per_turn(run),
        }
    return out


def _parts_per_turn(run: Mapping[str, Any]) -> dict[str, float] | None:
    """The run's CPU per turn split by the parts of its profile (`bench_profile.PARTS`): what
    the pipeline, the turn's write and the rest each cost a turn."""
    per_turn, parts = cpu_us_per_turn(run), (run.get("profile") or {}).get("parts_percent")
    if per_turn is None or not parts:
        return None
    return {part: round(per_turn * share / 100, 1) for part, share in parts.items()}


def _product_targets(report: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for step in report.get("steps", []):
        for mode, row in product_vs_relay(step).items():
            out[f"{mode}_{step['concurrency']}"] = {
                **row,
                "met": _le(row["p50_over_relay"], 1.5)
                and _le(row["p99_over_relay"], 2.0)
                and _le(row["cpu_over_relay"], 1.2)
                and _le(row["drain_s"], 30.0),
            }
    one = report.get("sequential")
    if one and "http_product" in one["added_ttft_ms"]:
        p50 = one["added_ttft_ms"]["http_product"]["p50"]
        out["http_product_one_at_a_time_p50_le_1ms"] = {"value": p50, "met": _le(p50, 1.0)}
    return out


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _better_than_peer(comparison: Mapping[str, Any]) -> dict[str, Any]:
    ratios: list[float] = []
    for row in comparison["added_ttft"]:
        ratios += [r for r in row["peer_over_gateway"].values() if r is not None]
    throughput = comparison["throughput_gateway_over_peer"]
    if throughput is not None:
        ratios.append(throughput)
    return {"ratios": ratios, "met": bool(ratios) and all(r > 1 for r in ratios)}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _beside(run: Mapping[str, Any]) -> Mapping[str, Any]:
    """TTFT of the sessions that called the upstream directly in the same run."""
    probe = run.get("probe")
    return probe["ttft_ms"] if probe else {}


def _gc(run: Mapping[str, Any]) -> Mapping[str, Any]:
    """The gateway's garbage-collector pauses in the run (`bench_metrics.gc_pauses`), if read."""
    return run.get("gateway_gc") or {}


def _gc_cell(gc: Mapping[str, Any]) -> str:
    if not gc:
        return "-"
    return f"{_fmt(gc['over_5ms_per_minute'])} ({_fmt(gc['stopped_percent'])})"


def print_report(report: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    head = (
        f"{'sessions':>8} {'mode':<13} {'ttft p50':>9} {'p99':>9} {'beside p50':>10} "
        f"{'added p50':>9} "
        f"{'p95':>8} {'p99':>8} {'gw-own p50':>10} {'p99':>8} {'ev/s':>9} {'turns/s':>8} "
        f"{'err':>7} {'cpu% proxy':>10} {'sim':>6} {'client':>6} {'us/event':>8} "
        f"{'gc>5ms/min':>10}"
    )
    print(head, file=out)
    one = [report["sequential"]] if "sequential" in report else []
    for step in [*report.get("steps", []), *one]:
        for mode, run in step["modes"].items():
            add = step["added_ttft_ms"].get(mode, {})
            own = run["gateway_reported_added_ms"]
            cpu = run["cpu_percent"]
            proxy = proxy_cpu(cpu)
            print(
                f"{step['concurrency']:>8} {mode:<13} {_fmt(run['ttft_ms']['p50']):>9} "
                f"{_fmt(run['ttft_ms']['p99']):>9} {_fmt(_beside(run).get('p50')):>10} "
                f"{_fmt(add.get('p50')):>9} "
                f"{_fmt(add.get('p95')):>8} {_fmt(add.get('p99')):>8} {_fmt(own['p50']):>10} "
                f"{_fmt(own['p99']):>8} {_fmt(run['token_events_per_s']):>9} "
                f"{_fmt(run['turns_per_s']):>8} {run['error_rate']:>7.2%} {_fmt(proxy):>10} "
                f"{_fmt(cpu.get('sim')):>6} {_fmt(cpu.get('client')):>6} "
                f"{_fmt(cpu_us_per_event(run)):>8} {_fmt(_gc(run).get('over_5ms_per_minute')):>10}",
                file=out,
            )
    for step in [
        *report.get("steps", []),
        *([report["sequential"]] if "sequential" in report else []),
    ]:
        for mode, row in product_vs_relay(step).items():
            print(f"{step['concurrency']:>8} {mode} over {row['relay']}: {row}", file=out)
    if report.get("idle"):
        print(f"idle sessions: {report['idle']}", file=out)
    if report.get("peer") and not report["peer"].get("ran"):
        print(f"peer did not run: {report['peer'].get('reason')}", file=out)
    if report.get("peer_comparison"):
        print(f"peer comparison: {report['peer_comparison']}", file=out)
    print(f"targets: {report.get('targets')}", file=out)


def markdown(report: Mapping[str, Any]) -> str:
    """The figures table of BENCHMARKS.md, from a result file."""
    rows = [
        "| sessions (open at close) | mode | TTFT p50 / p99 (ms) | direct beside it p50 / p99 (ms) "
        "| added p50 / p95 / p99 (ms) | added vs the direct run p50 / p99 (ms) "
        "| gateway's own p50 / p99 (ms) | token ev/s | turns/s | errors "
        "| in flight at close (oldest s) "
        "| CPU% proxy / sim / client | GC pauses over 5 ms per min (loop stopped %) "
        "| proxy CPU per event (us) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in report.get("steps", []):
        for mode, run in step["modes"].items():
            add = step["added_ttft_ms"].get(mode, {})
            old = step.get("added_vs_direct_run_ms", {}).get(mode, {})
            own, cpu, ttft = run["gateway_reported_added_ms"], run["cpu_percent"], run["ttft_ms"]
            proxy = proxy_cpu(cpu)
            beside = _beside(run)
            rows.append(
                f"| {step['concurrency']} ({_fmt(run.get('sessions_open'))}) | {mode} "
                f"| {_fmt(ttft['p50'])} / {_fmt(ttft['p99'])} "
                f"| {_fmt(beside.get('p50'))} / {_fmt(beside.get('p99'))} "
                f"| {_fmt(add.get('p50'))} / {_fmt(add.get('p95'))} / {_fmt(add.get('p99'))} "
                f"| {_fmt(old.get('p50'))} / {_fmt(old.get('p99'))} "
                f"| {_fmt(own['p50'])} / {_fmt(own['p99'])} | {_fmt(run['token_events_per_s'])} "
                f"| {_fmt(run['turns_per_s'])} | {run['error_rate']:.2%} "
                f"| {_fmt(run.get('in_flight_at_close'))} ({_fmt(run.get('oldest_in_flight_s'))}) "
                f"| {_fmt(proxy)} / {_fmt(cpu.get('sim'))} / {_fmt(cpu.get('client'))} "
                f"| {_gc_cell(_gc(run))} | {_fmt(cpu_us_per_event(run))} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    import orjson

    for name in sys.argv[1:]:
        with open(name, "rb") as source:
            print(markdown(orjson.loads(source.read())))
