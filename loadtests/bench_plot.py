"""The benchmark's figure: added TTFT and throughput against concurrency (matplotlib, Agg)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ["plot"]

_STYLES = {"p50": "-", "p95": "--", "p99": ":"}
_COLORS = {
    "ws": "tab:blue",
    "gateway_http": "tab:green",
    "peer_http": "tab:red",
    "floor": "tab:gray",
    "floor_native": "tab:olive",
}


def plot(report: Mapping[str, Any], path: Path) -> Path:
    """Draw the figure to `path`; raises ImportError when matplotlib is not installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["steps"]
    xs = [s["concurrency"] for s in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, color in _COLORS.items():
        for q, style in _STYLES.items():
            ys = [(s["added_ttft_ms"].get(mode) or {}).get(q) for s in steps]
            if any(y is not None for y in ys):
                left.plot(xs, ys, style, color=color, marker="o", label=f"{mode} {q}")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.axhline(5.0, color="grey", linewidth=0.8, linestyle="--")
    left.set_xscale("log")
    left.set_yscale("symlog", linthresh=1.0)
    left.set_ylim(bottom=0)
    left.set_xlabel("concurrent streaming sessions")
    left.set_ylabel("added TTFT, ms (vs. upstream direct)")
    left.set_title("Added time to first token")
    left.legend(fontsize=7)
    for mode in ("direct", *_COLORS):
        ys = [(s["modes"].get(mode) or {}).get("token_events_per_s") for s in steps]
        if any(y is not None for y in ys):
            right.plot(xs, ys, marker="o", color=_COLORS.get(mode, "black"), label=mode)
    right.axhline(10_000, color="grey", linewidth=0.8, linestyle="--")
    right.set_xscale("log")
    right.set_xlabel("concurrent streaming sessions")
    right.set_ylabel("relayed token events / s")
    right.set_title("Throughput")
    right.legend(fontsize=7)
    fig.suptitle(report["meta"]["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    """`python -m loadtests.bench_plot RESULT.json...`: redraw plots next to their JSON files."""
    for name in argv:
        source = Path(name)
        print(plot(orjson.loads(source.read_bytes()), source.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
