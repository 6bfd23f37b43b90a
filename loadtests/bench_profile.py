"""A sampling profile of a gateway process during a bench run (py-spy, from outside the process),
and what it says: the top functions by own samples, and the share of the process's samples
spent in each part of the product (the relay, storage, the assessment pipeline, logging).

    python -m loadtests.bench_profile FILE.txt   # the summary of a profile written by a run

py-spy is not a dependency of the gateway: `pip install py-spy`. Without it, `profiled` records
nothing and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

__all__ = ["PARTS", "part_of", "profiled", "summarize_folded"]

# Where a sample's stack is, by the first of these its frames' files match (innermost first:
# the pipeline's own database calls count as the pipeline's, a turn's write as storage).
PARTS = (
    ("assessment pipeline", ("assess/",)),
    ("storage (turn writes)", ("gateway/turn_store.py", "db/interactions.py", "gateway/spool")),
    ("sessions (open, history)", ("db/sessions.py", "gateway/persistence.py")),
    ("logging", ("logging/", "gateway/logs", "gateway/observability.py")),
    ("database driver", ("asyncpg/",)),
)


def part_of(frames: Iterable[str]) -> str:
    """The part of the product a stack (its frames, outermost first) is working for."""
    stack = list(frames)
    for name, needles in PARTS:
        if any(n in frame for frame in stack for n in needles):
            return name
    return "relay and the rest"


def _parse(line: str) -> tuple[list[str], int] | None:
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return stack.split(";"), int(count)


def summarize_folded(lines: Iterable[str], top: int = 25) -> dict[str, Any]:
    """From py-spy's raw (folded) output: samples, the share of each part, and the `top`
    functions by own samples (the innermost frame)."""
    parts: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        parsed = _parse(line)
        if parsed is None:
            continue
        frames, count = parsed
        total += count
        parts[part_of(frames)] += count
        own[frames[-1]] += count
    share = {name: round(100 * n / total, 1) for name, n in parts.most_common()} if total else {}
    return {
        "samples": total,
        "parts_percent": share,
        "top_own_percent": [[f, round(100 * n / total, 1)] for f, n in own.most_common(top)],
    }


@contextlib.asynccontextmanager
async def profiled(pid: int, out: Path, duration_s: float) -> AsyncIterator[Path | None]:
    """py-spy records `pid` (and its worker processes) for `duration_s` into `out` (folded
    stacks, idle frames left out) while the block runs; None when py-spy is not installed."""
    exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin")
    if exe is None:
        print("py-spy is not installed: no profile", file=sys.stderr)
        yield None
        return
    argv = [exe, "record", "-p", str(pid), "--subprocesses", "-r", "200", "-f", "raw"]
    argv += ["-d", str(max(1, round(duration_s))), "-o", str(out), "--nonblocking"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield out
    finally:
        try:
            await asyncio.wait_for(proc.wait(), duration_s + 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def main(argv: list[str]) -> int:
    import orjson

    for name in argv:
        with open(name) as source:
            summary = summarize_folded(source)
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
