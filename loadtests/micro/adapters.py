"""CPU cost of the chat adapters (each wire format over the native client and over the SDK)
per turn and per streamed chunk, against the sim.

The sim runs in this process but on its own thread and event loop, so the CPU of the thread that
drives the adapter (`time.thread_time`) is the adapter's alone: request preparation, the HTTP
client and SSE decoding, and chunk handling. `time.process_time` (adapter + sim) is reported
too. The upstream answers at once (ttft 0, 40 tokens), unpaced unless `--tokens-per-s` is
given: unpaced, several chunks arrive per read; paced, each chunk is a read of its own, as under
real load. Turns run one after another so nothing else shares the loop.

    python -m loadtests.micro.adapters [--turns 200] [--tokens-per-s 1000] [--label before]

Prints a table and merges the figures, under the label, into `loadtests/results/adapters.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from loadtests.bench_output import RESULTS
from providers.anthropic_chat import AnthropicChat
from providers.chat import ChatProvider, ChatRequest, Message
from providers.native_chat import ANTHROPIC, OPENAI, NativeChat
from providers.openai_chat import OpenAIChat
from providers.sim import SimKnobs, running_sim
from providers.sim.corpus import SENTENCES

KNOBS = SimKnobs(ttft_ms=0, tokens_per_s=0, reply_tokens=40)
KINDS = ("openai", "anthropic")
CLIENTS = ("native", "sdk")
SIZES = (2, 42)  # a first turn; a long realtime session (system prompt + 41 history messages)


@dataclass(frozen=True, slots=True)
class Figures:
    """One adapter at one request size, averaged over `turns`."""

    adapter: str
    messages: int
    turns: int
    chunks_per_turn: float
    cpu_ms_per_turn: float  # the adapter's thread
    cpu_ms_to_first_chunk: float  # of which: request preparation, send, first chunk
    cpu_us_per_chunk: float  # of which: each later chunk
    process_cpu_ms_per_turn: float  # adapter + sim
    wall_ms_per_turn_p50: float


def conversation(size: int) -> tuple[Message, ...]:
    """A system prompt and `size - 1` alternating user/assistant messages of corpus text."""
    messages = [Message("system", "You are a patient singing coach. " + " ".join(SENTENCES[:3]))]
    for i in range(size - 1):
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(2))
        messages.append(Message("user" if i % 2 == 0 else "assistant", text))
    return tuple(messages)


def make_adapter(kind: str, client: str, sim_url: str) -> ChatProvider:
    base_url = f"{sim_url}/v1" if kind == "openai" else sim_url
    name = f"bench-{kind}-{client}"
    if client == "native":
        dialect = OPENAI if kind == "openai" else ANTHROPIC
        return NativeChat(name, dialect, api_key="sk-bench", base_url=base_url)
    adapter = OpenAIChat if kind == "openai" else AnthropicChat
    return adapter(name, api_key="sk-bench", base_url=base_url)


@dataclass(slots=True)
class _Turn:
    cpu_s: float
    first_cpu_s: float
    process_cpu_s: float
    wall_s: float
    chunks: int


async def one_turn(provider: ChatProvider, request: ChatRequest) -> _Turn:
    wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
    first_cpu = 0.0
    chunks = 0
    stream: AsyncIterator[Any] = provider.stream(request)
    async for chunk in stream:
        if chunk.text:
            chunks += 1
            if chunks == 1:
                first_cpu = time.thread_time() - cpu
    return _Turn(
        cpu_s=time.thread_time() - cpu,
        first_cpu_s=first_cpu,
        process_cpu_s=time.process_time() - process,
        wall_s=time.perf_counter() - wall,
        chunks=chunks,
    )


async def measure(
    kind: str, client: str, size: int, sim_url: str, turns: int, warmup: int
) -> Figures:
    provider = make_adapter(kind, client, sim_url)
    request = ChatRequest(model="gpt-4o-mini", messages=conversation(size))
    try:
        for _ in range(warmup):  # connection pool, imports, lazy SDK state
            await one_turn(provider, request)
        runs = [await one_turn(provider, request) for _ in range(turns)]
    finally:
        await provider.aclose()
    cpu = sum(r.cpu_s for r in runs)
    first = sum(r.first_cpu_s for r in runs)
    chunks = sum(r.chunks for r in runs)
    later_chunks = chunks - turns  # the first chunk is counted with the request
    return Figures(
        adapter=f"{kind}-{client}",
        messages=size,
        turns=turns,
        chunks_per_turn=chunks / turns,
        cpu_ms_per_turn=cpu / turns * 1000,
        cpu_ms_to_first_chunk=first / turns * 1000,
        cpu_us_per_chunk=(cpu - first) / max(later_chunks, 1) * 1e6,
        process_cpu_ms_per_turn=sum(r.process_cpu_s for r in runs) / turns * 1000,
        wall_ms_per_turn_p50=statistics.median(r.wall_s for r in runs) * 1000,
    )


@contextmanager
def sim_in_thread(knobs: SimKnobs = KNOBS) -> Iterator[str]:
    """Serve the sim on a thread (and event loop) of its own; yields its base URL."""
    started = threading.Event()
    url: list[str] = []
    stopping: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        stop = asyncio.Event()
        stopping.append((asyncio.get_running_loop(), stop))
        async with running_sim(knobs) as sim:
            url.append(sim.url)
            started.set()
            await stop.wait()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # handed to the main thread, which raises it
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=main, name="sim", daemon=True)
    thread.start()
    started.wait(30)
    if not url:
        raise RuntimeError("the sim did not start") from (failure[0] if failure else None)
    try:
        yield url[0]
    finally:
        loop, stop = stopping[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def print_table(label: str, rows: list[Figures], knobs: SimKnobs = KNOBS) -> None:
    rate = f"{knobs.tokens_per_s:g} tokens/s" if knobs.tokens_per_s else "unpaced"
    print(f"\n{label}: CPU of the adapter's thread, {knobs.reply_tokens}-token replies, {rate}")
    print(
        f"{'adapter':<17} {'msgs':>4} {'turns':>5} {'chunks':>6} {'ms/turn':>8} "
        f"{'to 1st':>7} {'us/chunk':>8} {'proc ms':>8} {'wall p50':>8}"
    )
    for r in rows:
        print(
            f"{r.adapter:<17} {r.messages:>4} {r.turns:>5} {r.chunks_per_turn:>6.1f} "
            f"{r.cpu_ms_per_turn:>8.2f} {r.cpu_ms_to_first_chunk:>7.2f} "
            f"{r.cpu_us_per_chunk:>8.1f} {r.process_cpu_ms_per_turn:>8.2f} "
            f"{r.wall_ms_per_turn_p50:>8.2f}"
        )


def save(label: str, rows: list[Figures], out: Path, knobs: SimKnobs = KNOBS) -> None:
    results: dict[str, Any] = orjson.loads(out.read_bytes()) if out.exists() else {}
    results[label] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "machine": platform.processor() or platform.machine(),
        "knobs": {
            "ttft_ms": 0,
            "tokens_per_s": knobs.tokens_per_s,
            "reply_tokens": knobs.reply_tokens,
        },
        "rows": [asdict(r) for r in rows],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(f"\nwrote {out} [{label}]")


async def run_all(sim_url: str, turns: int, warmup: int) -> list[Figures]:
    return [
        await measure(kind, client, size, sim_url, turns, warmup)
        for kind in KINDS
        for client in CLIENTS
        for size in SIZES
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--label", default="latest", help="key of this run in the JSON file")
    parser.add_argument(
        "--tokens-per-s",
        type=float,
        default=0.0,
        help="pace the sim (0: as fast as it can; a pace makes each chunk its own read)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "adapters.json")
    args = parser.parse_args(argv)
    knobs = replace(KNOBS, tokens_per_s=args.tokens_per_s)
    with sim_in_thread(knobs) as sim_url:
        rows = asyncio.run(run_all(sim_url, args.turns, args.warmup))
    print_table(args.label, rows, knobs)
    save(args.label, rows, args.out, knobs)


if __name__ == "__main__":
    main()
