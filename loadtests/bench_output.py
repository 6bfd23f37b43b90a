"""Where the small benchmark programs put their figures: one JSON file each, stamped with when
and on which Python they were measured."""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ["RESULTS", "write_figures"]

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
