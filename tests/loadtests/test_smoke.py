"""Smoke runs of the load tools (a few users for a few seconds), so that they cannot rot.

Each drives a real gateway on loopback and asserts on what the tool itself reports; none of
them is a benchmark (figures come from `python -m loadtests.bench`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.server import RunningGateway, running_gateway
from gateway.settings import QuotaSettings
from loadtests.bench_report import markdown
from tests.conftest import make_settings

pytestmark = pytest.mark.slow  # k6, Locust and the benchmark programs run as processes

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"
BIN = Path(sys.executable).parent
ROOMY = QuotaSettings(
    turns_per_minute=100_000, tokens_per_day=10**9, concurrent_streams=100, connections=100
)


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def _read(path: Path) -> str:
    # Small files the finished tool wrote: reading them cannot stall the gateway under test.
    return path.read_text()


def _names(folder: Path) -> list[str]:
    # What the finished tool left in its (small) output folder.
    return sorted(p.name for p in folder.iterdir())


async def _run(*argv: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    return proc.returncode or 0, out.decode(errors="replace")


async def _python_m(module: str, *args: str, timeout_s: float) -> tuple[int, str]:
    """`python -m module args...` in the project's interpreter."""
    return await _run(sys.executable, "-m", module, *args, env={}, timeout_s=timeout_s)


@pytest.fixture
async def load_gateway(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(fast_sim.url, tmp_path, quotas=ROOMY)
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
def tokens(token: Callable[..., str]) -> str:
    return ",".join(token(f"load-{i}") for i in range(4))


async def _k6(script: str, gateway: RunningGateway, tokens: str, tmp_path: Path) -> dict[str, Any]:
    summary = tmp_path / "summary.json"
    code, out = await _run(
        _tool("k6"),
        "run",
        "--quiet",
        "--no-usage-report",
        "--summary-export",
        str(summary),
        str(LOADTESTS / "k6" / script),
        env={
            "GATEWAY_URL": gateway.url,
            "TOKENS": tokens,
            "VUS": "2",
            "DURATION": "3s",
            "TURNS": "2",
            "K6_NO_USAGE_REPORT": "true",
        },
    )
    assert code == 0, out[-3000:]
    metrics: dict[str, Any] = json.loads(_read(summary))["metrics"]
    return metrics


async def test_k6_realtime_websocket(
    load_gateway: RunningGateway, tokens: str, tmp_path: Path
) -> None:
    metrics = await _k6("ws_realtime.js", load_gateway, tokens, tmp_path)
    assert metrics["checks"]["passes"] > 0
    assert metrics["checks"]["fails"] == 0
    assert metrics["turns_completed"]["count"] > 0
    assert metrics.get("ws_errors", {}).get("count", 0) == 0
    assert 0 < metrics["ttft_client_ms"]["max"] <= metrics["turn_time_ms"]["max"]


async def test_k6_openai_streaming(
    load_gateway: RunningGateway, tokens: str, tmp_path: Path
) -> None:
    metrics = await _k6("openai_http.js", load_gateway, tokens, tmp_path)
    assert metrics["checks"]["passes"] > 0
    assert metrics["checks"]["fails"] == 0
    assert metrics["token_events"]["count"] > 0
    assert metrics.get("stream_errors", {}).get("count", 0) == 0


async def test_locust_headless(load_gateway: RunningGateway, tokens: str, tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    code, out = await _run(
        _tool("locust"),
        "-f",
        str(LOADTESTS / "locustfile.py"),
        "--headless",
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "5s",
        "--stop-timeout",
        "10",
        "--host",
        load_gateway.url,
        "--csv",
        str(prefix),
        env={"TOKENS": tokens, "TURNS": "2"},
    )
    stats = _read(Path(f"{prefix}_stats.csv"))
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(io.StringIO(stats))}
    total = rows[("", "Aggregated")]
    assert int(total["Request Count"]) > 0, out[-3000:]
    assert int(total["Failure Count"]) == 0, out[-3000:]
    assert any(kind == "TTFT" for kind, _ in rows), sorted(rows)
    assert code == 0, out[-3000:]


async def test_bench_quick_writes_results(tmp_path: Path) -> None:
    code, out = await _python_m(
        "loadtests.bench",
        "--quick",
        "--idle",
        "20",
        "--out",
        str(tmp_path),
        timeout_s=90,
    )
    assert code == 0, out[-3000:]
    report = json.loads(_read(tmp_path / "bench-quick.json"))
    # The run replaces the folder's last one; no copy under its timestamp unless asked.
    assert _names(tmp_path) == ["bench-quick.json", "bench-quick.png"]
    assert {"meta", "steps", "idle", "targets"} <= report.keys()
    assert [s["concurrency"] for s in report["steps"]] == [5, 10]
    for step in report["steps"]:
        assert {"direct", "ws"} <= step["modes"].keys()
        ws = step["modes"]["ws"]
        assert ws["turns_ok"] > 0 and ws["error_rate"] == 0, ws
        assert ws["ttft_ms"]["p50"] is not None
        assert ws["cpu_percent"]["gateway"] > 0
        # The gateway's collector pauses over the window, read from its /metrics.
        assert {"gen0", "gen1", "gen2", "over_5ms_per_minute"} <= ws["gateway_gc"].keys()
        assert step["modes"]["direct"]["gateway_gc"] is None
        # Added TTFT is measured against sessions that called the upstream directly beside.
        probe = ws["probe"]
        assert probe["sessions"] == 10 and probe["turns_ok"] > 0 and probe["error_rate"] == 0
        expected = round(ws["ttft_ms"]["p99"] - probe["ttft_ms"]["p99"], 3)
        assert step["added_ttft_ms"]["ws"]["p99"] == expected
        low, high = probe["added_ttft_interval_ms"]["p99"]  # how far it could move in the run
        assert low <= high
        assert step["added_vs_direct_run_ms"]["ws"]["p99"] is not None
    assert report["idle"]["sessions_connected"] == 20
    assert report["idle"]["rss_per_session_kib"] is not None


async def test_bench_quick_measures_the_product_beside_the_relay(tmp_path: Path) -> None:
    code, out = await _python_m(
        "loadtests.bench",
        *("--quick", "--steps", "5", "--idle", "0", "--product", "--sequential"),
        *("--out", str(tmp_path)),
        timeout_s=240,
    )
    assert code == 0, out[-3000:]
    report = json.loads(_read(tmp_path / "bench-quick.json"))
    for step in [*report["steps"], report["sequential"]]:
        assert {"ws", "gateway_http", "ws_product", "http_product"} <= step["modes"].keys()
        for mode in ("ws_product", "http_product"):
            run = step["modes"][mode]
            assert run["turns_ok"] > 0 and run["error_rate"] == 0, run
            assert run["cpu_percent"]["product"] > 0 and step["cpu_us_per_event"][mode]
            backlog = run["assessment_backlog"]  # read from the product's own outbox table
            assert backlog["max"] is not None and backlog["left_after_drain"] == 0, backlog
            assert backlog["jobs_by_status"].get("done", 0) > 0, backlog
    assert report["sequential"]["concurrency"] == 1
    assert report["sequential"]["modes"]["http_product"]["probe"]["sessions"] == 1
    targets = report["targets"]
    assert {"ws_product_5", "http_product_5", "http_product_one_at_a_time_p50_le_1ms"} <= set(
        targets
    )
    assert targets["ws_product_5"]["relay"] == "ws"


async def test_bench_quick_with_two_workers_and_both_floor_relays(tmp_path: Path) -> None:
    code, out = await _python_m(
        "loadtests.bench",
        "--quick",
        "--steps",
        "5",
        "--idle",
        "0",
        "--workers",
        "2",
        "--floor",
        "--stamped",
        "--out",
        str(tmp_path),
        timeout_s=120,
    )
    assert code == 0, out[-3000:]
    report = json.loads(_read(tmp_path / "bench-quick.json"))
    stamped = f"bench-quick-{report['meta']['timestamp']}"
    assert _read(tmp_path / f"{stamped}.json") == _read(tmp_path / "bench-quick.json")
    assert f"{stamped}.png" in _names(tmp_path)
    assert report["meta"]["gateway_workers"] == 2
    ws = report["steps"][0]["modes"]["ws"]
    assert ws["turns_ok"] > 0 and ws["error_rate"] == 0, ws
    assert ws["gateway_gc"] is None  # two workers: /metrics would answer for one of them
    assert report["targets"]["token_events_per_s_ge_10000"]["per_worker_of"] == 2
    assert report["meta"]["floor"] is True
    per_event = report["steps"][0]["cpu_us_per_event"]
    assert per_event["ws"] > 0, per_event
    for mode in ("floor", "floor_native"):  # the relay by hand, and with the gateway's client
        floor = report["steps"][0]["modes"][mode]
        assert floor["turns_ok"] > 0 and floor["error_rate"] == 0, floor
        assert floor["cpu_percent"][mode] > 0 and "gateway" not in floor["cpu_percent"]
        assert report["steps"][0]["added_ttft_ms"][mode]["p50"] is not None
        assert per_event[mode] > 0, per_event
        floor_row = next(r for r in markdown(report).splitlines() if f"| {mode} |" in r)
        assert floor_row.endswith(f"| {per_event[mode]:.2f} |"), floor_row


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--pin needs two CPUs")
async def test_bench_pin_puts_the_gateway_on_a_cpu_of_its_own(tmp_path: Path) -> None:
    code, out = await _python_m(
        "loadtests.bench",
        *("--quick", "--steps", "5", "--idle", "0", "--pin", "--out", str(tmp_path)),
        timeout_s=90,
    )
    assert code == 0, out[-3000:]
    report = json.loads(_read(tmp_path / "bench-quick.json"))
    cpus = sorted(os.sched_getaffinity(0))
    # What the kernel read back for the gateway, not what was asked.
    assert report["meta"]["pinned"] == {"load": cpus[1:], "gateway": cpus[:1]}
    assert report["steps"][0]["modes"]["ws"]["turns_ok"] > 0


async def test_bench_gc_compares_collector_thresholds(tmp_path: Path) -> None:
    out_file = tmp_path / "gc.json"
    code, out = await _python_m(
        "loadtests.bench_gc",
        *("--idle", "10", "--sessions", "4", "--duration", "1.5", "--warmup", "0.3"),
        *("--thresholds", "700,10,10", "900,40,20", "--out", str(out_file)),
        timeout_s=120,
    )
    assert code == 0, out[-3000:]
    runs = json.loads(_read(out_file))["runs"]
    assert [r["thresholds"] for r in runs] == [[700, 10, 10], [900, 40, 20]]
    for run in runs:
        assert run["idle_connected"] == 10
        assert run["turns_ok"] > 0 and run["error_rate"] == 0, run
        assert {"gen0", "gen1", "gen2", "over_5ms_per_minute"} <= run["gc"].keys(), run["gc"]
        assert run["added_ttft_ms"]["p50"] is not None
    assert "over 5 ms" in out


async def test_added_ttft_runs_turns_through_gateway_processes(tmp_path: Path) -> None:
    out_file = tmp_path / "added_ttft.json"
    code, out = await _python_m(
        "loadtests.added_ttft", "--turns", "3", "--out", str(out_file), timeout_s=120
    )
    assert code == 0, out[-3000:]
    result = json.loads(_read(out_file))
    assert result["turns"] == 3 and "pipeline_on" not in result
    # Its own bearer token was accepted: every turn completed and was timed.
    figures = result["pipeline_off"]
    assert {"added_ttft_ms", "client_ttft_ms", "turn_end_ms"} <= figures.keys()
    assert figures["client_ttft_ms"]["p50"] > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["loadtests.micro.writer", "--events", "2000"],
        ["loadtests.micro.adapters", "--turns", "3", "--warmup", "1", "--tokens-per-s", "2000"],
        ["loadtests.micro.quota_sweep", "--users", "300"],
        ["loadtests.micro.skills", "--users", "2"],
        ["loadtests.micro.scheduler", "--users", "20"],
        ["loadtests.micro.agent", "--turns", "2"],
    ],
)
async def test_microbenchmarks_print_and_write_figures(argv: list[str], tmp_path: Path) -> None:
    out_file = tmp_path / "figures.json"
    code, out = await _python_m(*argv, "--out", str(out_file), timeout_s=120)
    assert code == 0, out[-3000:]
    figures = json.loads(_read(out_file))
    assert figures, out[-3000:]
    assert re.search(r"\b(us|ms)\b", out), out[-3000:]  # the printed table or line
