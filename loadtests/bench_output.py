"""Where the small benchmark programs put their figures: one JSON file each, stamped with when
and on which Python they were measured."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench_plot import plot

__all__ = ["RESULTS", "write_figures", "write_report"]

RESULTS = Path(__file__).parent / "results"


def write_figures(out: Path, figures: Mapping[str, Any]) -> None:
    """`figures` with the time and Python version in front, as indented JSON at `out`."""
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        **figures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"wrote {out}")


def write_report(
    report: Mapping[str, Any], out: Path, quick: bool, *, stamped: bool = False
) -> list[Path]:
    """`bench.json` and its plot `bench.png` in `out` (`bench-quick.*` for `--quick`), in place
    of the previous run's: a folder holds its latest run, git the ones before. With `stamped`,
    also copies named after the run's start (`bench-<timestamp>.*`, which git ignores)."""
    out.mkdir(parents=True, exist_ok=True)
    base = "bench-quick" if quick else "bench"
    names = [base, f"{base}-{report['meta']['timestamp']}"] if stamped else [base]
    body = orjson.dumps(report, option=orjson.OPT_INDENT_2)
    paths = [out / f"{name}.json" for name in names]
    for path in paths:
        path.write_bytes(body)
    try:
        paths += [plot(report, out / f"{name}.png") for name in names]
    except ImportError:
        print(
            "matplotlib is not installed: no PNG; draw it later with "
            f"`python -m loadtests.bench_plot {paths[0]}` in a Python that has matplotlib",
            file=sys.stderr,
        )
    return paths
