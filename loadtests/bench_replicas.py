"""Two replicas as one gateway: how fast a feed event crosses from one to the other, and what
the cross-replica path costs a streaming turn.

Starts the simulated upstream and gateways as their own processes on loopback, with Redis at
`REDIS_URL` (default `redis://127.0.0.1:6379/0`; a fresh key prefix per run). Four phases, each
with `--sessions` WebSocket sessions on one gateway running turns back to back:

1. `single`: one gateway, no Redis (as with one replica).
2. `linked_alone`: the same gateway linked to Redis (every feed item published there), no other
   replica: what the cross-replica path costs the turns of the replica that produces them.
3. `replicas`: gateways A and B linked over Redis; the sessions stream on A while B serves the
   live feed (`/v1/sessions/{id}/events`) of `--followers` of them. For every event, the
   cross-replica latency is when B's reader got it minus when A's WebSocket client got it (one
   clock: both readers run on this host; the WebSocket sessions in a process of their own).
4. `single` again: the spread between the two single runs is the run's noise.

Prints and writes (`loadtests/results/bench_replicas.json`, or `--out`) the cross-replica
latency p50/p99/max, the Redis hop alone as B measures it (`coach_replica_feed_lag_seconds`, from
A's send of a batch to its arrival in B's hub: the bucket that holds p50/p99), and the
client-observed TTFT p50/p99 of each phase.

    python -m loadtests.bench_replicas [--sessions 200] [--followers 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import orjson
from websockets.asyncio.client import connect

from loadtests.added_ttft import free_port, process, wait_ready

RESULTS = Path(__file__).parent / "results"
SECRET = "bench-secret-bench-secret-bench-secret-0123"
SIM_KNOBS = ["--ttft-ms", "50", "--tokens-per-s", "50", "--reply-tokens", "40"]
Key = tuple[str, str, int]  # (session id, turn id, index of the event in the turn)


def mint_token(user: str, *, roles: list[str] | None = None, ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + ttl_s, "roles": roles or []}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


@dataclass
class Marks:
    """Wall-clock times (one clock for every process on the host) at which each event reached
    A's WebSocket client and B's feed reader; TTFT of every turn started in the window."""

    window: tuple[float, float] = (0.0, 0.0)
    on_a: dict[Key, float] = field(default_factory=dict)
    on_b: dict[Key, float] = field(default_factory=dict)
    ttft_ms: list[float] = field(default_factory=list)
    followed: set[str] = field(default_factory=set)
    lag: dict[float, float] = field(default_factory=dict)  # B's lag histogram, in the window

    def measuring(self, now: float) -> bool:
        return self.window[0] <= now < self.window[1]

    def crossings_ms(self) -> list[float]:
        both = self.on_b.keys() & self.on_a.keys()
        return [(self.on_b[k] - self.on_a[k]) * 1000 for k in both if self.measuring(self.on_a[k])]


async def session(ws_url: str, user: str, marks: Marks, ids: asyncio.Queue[str]) -> None:
    headers = {"Authorization": f"Bearer {mint_token(user)}"}
    async with connect(f"{ws_url}/v1/realtime", additional_headers=headers, max_queue=None) as ws:
        sid = orjson.loads(await ws.recv())["session_id"]
        ids.put_nowait(sid)
        turn = 0
        while time.time() < marks.window[1]:
            turn_id, turn = f"t{turn}", turn + 1
            sent = time.time()
            turn_input = {"type": "input_text", "text": "tip", "turn_id": turn_id}
            await ws.send(orjson.dumps(turn_input).decode())
            index, first = 0, True
            while True:
                event = orjson.loads(await ws.recv())
                now = time.time()
                kind = event["type"]
                if not kind.startswith("response."):
                    continue
                if sid in marks.followed:
                    marks.on_a[(sid, turn_id, index)] = now
                index += 1
                if kind == "response.delta" and first:
                    first = False
                    if marks.measuring(sent):
                        marks.ttft_ms.append((now - sent) * 1000)
                if kind in ("response.completed", "response.failed"):
                    break


async def follow(base: str, sid: str, marks: Marks) -> None:
    """B's reader of one session's feed (as an operator): the same events, numbered by turn as
    A's client saw them. Without a database B learns of a session from its first events: until
    then the feed is a 404, tried again."""
    headers = {"Authorization": f"Bearer {mint_token('olga', roles=['ops'])}"}
    async with httpx.AsyncClient(base_url=base, timeout=None) as http:
        while time.time() < marks.window[1]:
            async with http.stream("GET", f"/v1/sessions/{sid}/events", headers=headers) as resp:
                if resp.status_code == 200:
                    await read_feed(resp, sid, marks)
                    return
            await asyncio.sleep(0.2)


async def read_feed(response: httpx.Response, sid: str, marks: Marks) -> None:
    index: dict[str, int] = {}  # turns seen from their `response.started` on
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind.startswith("response."):
            now = time.time()
            turn_id = orjson.loads(line[6:]).get("turn_id", "")
            if kind == "response.started":
                index[turn_id] = 0
            n = index.get(turn_id)
            if n is not None:
                index[turn_id] = n + 1
                marks.on_b[(sid, turn_id, n)] = now
        if time.time() > marks.window[1]:
            return


async def run_load(args: argparse.Namespace) -> None:
    """`--load`: the WebSocket sessions on A, in a process of their own (so that the feed
    readers' process is not the one saturated); session ids to stdout, marks to `--marks`."""
    marks = Marks(window=(args.start_at, args.start_at + args.seconds))
    ids: asyncio.Queue[str] = asyncio.Queue()
    tasks = [
        asyncio.create_task(session(args.load, f"user{i}", marks, ids))
        for i in range(args.sessions)
    ]
    opened = [await ids.get() for _ in range(args.sessions)]
    marks.followed.update(opened[: args.followers])
    print(orjson.dumps(opened[: args.followers]).decode(), flush=True)
    failures = await asyncio.gather(*tasks, return_exceptions=True)
    for failure in failures:
        if failure is not None:
            print(f"a session failed: {failure!r}", file=sys.stderr)
    out = {"ttft_ms": marks.ttft_ms, "on_a": [[*k, v] for k, v in marks.on_a.items()]}
    await asyncio.to_thread(args.marks.write_bytes, orjson.dumps(out))


async def load(
    ws_url: str, feed_url: str | None, args: argparse.Namespace, marks_path: Path
) -> Marks:
    start_at = time.time() + 6.0  # the sessions open and warm up first
    marks = Marks(window=(start_at, start_at + args.seconds))
    argv = [sys.executable, "-m", "loadtests.bench_replicas", "--load", ws_url]
    argv += ["--sessions", str(args.sessions), "--seconds", str(args.seconds)]
    argv += ["--followers", str(args.followers if feed_url else 0), "--start-at", str(start_at)]
    argv += ["--marks", str(marks_path)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    followed = orjson.loads(await proc.stdout.readline())
    readers = [asyncio.create_task(follow(feed_url, sid, marks)) for sid in followed if feed_url]
    if feed_url:
        await asyncio.sleep(max(0.0, marks.window[0] - time.time()))
        before = await lag_buckets(feed_url)
        await asyncio.sleep(max(0.0, marks.window[1] - time.time()))
        marks.lag = bucket_delta(await lag_buckets(feed_url), before)
    await proc.wait()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    raw = orjson.loads(await asyncio.to_thread(marks_path.read_bytes))
    marks.ttft_ms = raw["ttft_ms"]
    marks.on_a = {(sid, turn_id, n): at for sid, turn_id, n, at in raw["on_a"]}
    return marks


async def lag_buckets(base: str) -> dict[float, float]:
    """B's `coach_replica_feed_lag_seconds` histogram: upper bound -> cumulative count."""
    async with httpx.AsyncClient(base_url=base) as http:
        text = (await http.get("/metrics")).text
    buckets = {}
    for line in text.splitlines():
        if line.startswith("coach_replica_feed_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def bucket_quantile(buckets: dict[float, float], q: float) -> str | None:
    """The upper bound (ms) of the bucket that holds quantile `q`: "<= 2 ms"."""
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return "> 1000 ms" if bound == float("inf") else f"<= {bound * 1000:g} ms"
    return None


def gateway_env(sim_port: int) -> dict[str, str]:
    return {
        "COACH_JWT_SECRET": SECRET,
        "COACH_PERSISTENCE": "false",
        "COACH_SIM_URL": f"http://127.0.0.1:{sim_port}",
        # Quotas off (0): with Redis they would cost each turn round trips of their own, in the
        # replicas phase only; what is measured here is the cross-replica feed path.
        "COACH_QUOTAS__TURNS_PER_MINUTE": "0",
        "COACH_QUOTAS__TOKENS_PER_DAY": "0",
        "COACH_QUOTAS__AUDIO_SECONDS_PER_DAY": "0",
        "COACH_QUOTAS__CONCURRENT_STREAMS": "0",
        "COACH_QUOTAS__CONNECTIONS": "0",
        "COACH_SEND_QUEUE_SIZE": "1024",
        "COACH_LOG_LEVEL": "warning",
    }


async def phase(
    exe: str,
    env: dict[str, str],
    redis_url: str | None,
    args: argparse.Namespace,
    *,
    with_b: bool = True,
) -> dict[str, object]:
    a_port, b_port = free_port(), free_port()
    env = {k: v for k, v in env.items() if k not in ("REDIS_URL", "COACH_REDIS_URL")}
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    linked = {**env, "REDIS_URL": redis_url or "", "COACH_REDIS_KEY_PREFIX": prefix}
    env_a = {**linked, "COACH_REPLICA_ID": "a"} if redis_url else env
    with process([exe, "serve", "--port", str(a_port)], env_a):
        await wait_ready(f"http://127.0.0.1:{a_port}/readyz")
        marks_path = Path(tempfile.mkdtemp()) / "marks.json"
        if redis_url is None or not with_b:
            marks = await load(f"ws://127.0.0.1:{a_port}", None, args, marks_path)
        else:
            with process(
                [exe, "serve", "--port", str(b_port)], {**linked, "COACH_REPLICA_ID": "b"}
            ):
                await wait_ready(f"http://127.0.0.1:{b_port}/readyz")
                feed_url = f"http://127.0.0.1:{b_port}"
                marks = await load(f"ws://127.0.0.1:{a_port}", feed_url, args, marks_path)
    figures: dict[str, object] = {
        "turns": len(marks.ttft_ms),
        "ttft_ms": {"p50": pct(marks.ttft_ms, 0.5), "p99": pct(marks.ttft_ms, 0.99)},
    }
    if redis_url is not None and with_b:
        crossings = marks.crossings_ms()
        figures["cross_replica_ms"] = {
            "events": len(crossings),
            "p50": pct(crossings, 0.5),
            "p99": pct(crossings, 0.99),
            "max": pct(crossings, 1.0),
        }
        figures["redis_hop_on_b"] = {
            "batches": marks.lag.get(float("inf"), 0.0),
            "p50": bucket_quantile(marks.lag, 0.5),
            "p99": bucket_quantile(marks.lag, 0.99),
        }
    return figures


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    sim_port = free_port()
    exe = str(Path(sys.executable).with_name("coach-gateway"))
    env = gateway_env(sim_port)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    result: dict[str, object] = {
        "sessions": args.sessions,
        "followers": args.followers,
        "seconds": args.seconds,
        "sim": " ".join(SIM_KNOBS),
    }
    with process([exe, "sim-upstream", "--port", str(sim_port), *SIM_KNOBS], env):
        await wait_ready(f"http://127.0.0.1:{sim_port}/_sim/stats")
        result["single"] = await phase(exe, env, None, args)
        print("single:", result["single"], flush=True)
        result["linked_alone"] = await phase(exe, env, redis_url, args, with_b=False)
        print("linked alone:", result["linked_alone"], flush=True)
        result["replicas"] = await phase(exe, env, redis_url, args)
        print("replicas:", result["replicas"], flush=True)
        result["single_again"] = await phase(exe, env, None, args)
        print("single again:", result["single_again"], flush=True)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--followers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_replicas.json")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # the load process: A's WebSocket URL
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--marks", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        asyncio.run(run_load(args))
        return
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
