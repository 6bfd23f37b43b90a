"""Failover under chaos: what clients see while the primary target fails, and how fast its
breaker opens once it dies.

Starts the simulated upstream and two gateways (one per phase, so each starts with closed
breakers and an empty failure window) as their own processes on loopback, and drives real
WebSocket turns from several concurrent sessions, each its own user.

1. Steady faults: the primary target (`primary:gpt-4o-mini`) fails `--fail-rate` of its calls
   with 503 while the backup is healthy. Reports the share of turns the client saw fail, the
   turns served by each target, and the client-observed TTFT of failed-over turns (non-empty
   `response.completed.fallbacks`) against turns that were not failed over. Turns that skipped
   the primary because its circuit was open (`circuit_open`) are counted apart, since they pay
   no retry.
2. Death: after `--warm-s` of healthy traffic the primary fails every call from a recorded
   instant; `/metrics` is polled every ~20 ms until `coach_breaker_state` of the primary reads 2
   (open). Reports that delay and the client turns that failed while it ran.

Writes `loadtests/results/chaos.json` (or `--out`).

    python -m loadtests.bench_chaos [--turns 300] [--concurrency 8] [--fail-rate 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from loadtests.added_ttft import (
    RESULTS,
    SECRET,
    free_port,
    mint_token,
    pct,
    process,
    wait_ready,
)

PRIMARY = "primary:gpt-4o-mini"
BREAKER_LINE = re.compile(r'^coach_breaker_state\{target="primary:gpt-4o-mini"\}\s+(\S+)', re.M)
OPEN = 2.0
POLL_S = 0.02
TURN_TIMEOUT_S = 30.0
WINDOW_S = 30.0  # the gateway's default breaker window (BreakerSettings.window_s)
SIM_FLAGS = ["--ttft-ms", "20", "--reply-tokens", "20", "--tokens-per-s", "400"]


@dataclass(slots=True)
class Turn:
    """One client turn, timed with `time.perf_counter()` by the client."""

    sent: float
    ended: float = 0.0
    first: float | None = None
    ok: bool = False
    target: str = ""
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    @property
    def ttft_ms(self) -> float:
        assert self.first is not None
        return (self.first - self.sent) * 1000

    @property
    def failed_over(self) -> bool:
        return bool(self.fallbacks)

    @property
    def skipped_open_circuit(self) -> bool:
        return self.failed_over and all(f["code"] == "circuit_open" for f in self.fallbacks)


@dataclass(slots=True)
class Tickets:
    """Hands out turns to the sessions: at most `left` (None: unbounded) until `stop` is set."""

    left: int | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> bool:
        if self.stop.is_set() or self.left == 0:
            return False
        if self.left is not None:
            self.left -= 1
        return True


# -- the client


async def one_turn(ws: ClientConnection, text: str) -> Turn:
    turn = Turn(sent=time.perf_counter())
    await ws.send(orjson.dumps({"type": "input_text", "text": text}).decode())
    while True:
        event = orjson.loads(await ws.recv())
        kind = event["type"]
        if kind == "response.delta" and turn.first is None:
            turn.first = time.perf_counter()
        if kind in ("response.completed", "response.failed", "rate_limited", "error"):
            break
    turn.ended = time.perf_counter()
    turn.ok = kind == "response.completed" and turn.first is not None
    if kind == "response.completed":
        turn.target = f"{event['provider']}:{event['model']}"
        turn.fallbacks = list(event.get("fallbacks") or [])
    else:
        turn.error = str(event.get("error") or kind)
    return turn


async def session(ws_url: str, user: str, tickets: Tickets, out: list[Turn]) -> None:
    """One user's session: sequential turns while tickets last."""
    headers = {"Authorization": f"Bearer {mint_token(user)}"}
    async with connect(f"{ws_url}/v1/realtime", additional_headers=headers) as ws:
        await ws.recv()  # session.created
        i = 0
        while tickets.take():
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(TURN_TIMEOUT_S):
                    out.append(await one_turn(ws, f"tip {i}"))
            except TimeoutError:
                out.append(Turn(sent, ended=time.perf_counter(), error="client timeout"))
                return  # the socket is mid-turn: this session is done
            i += 1


async def drive(ws_url: str, users: list[str], tickets: Tickets) -> list[Turn]:
    turns: list[Turn] = []
    async with asyncio.TaskGroup() as tasks:
        for user in users:
            tasks.create_task(session(ws_url, user, tickets, turns))
    return turns


# -- watching the breaker from outside


@dataclass(frozen=True, slots=True)
class Change:
    """The primary's breaker state as first seen by a poll, and when the poll before was sent."""

    seen: float
    state: float
    previous_poll_sent: float


@dataclass(slots=True)
class BreakerWatch:
    """Polls the gateway's `/metrics` every `POLL_S` and records the primary's state changes."""

    url: str
    changes: list[Change] = field(default_factory=list)
    polls: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> float | None:
        return self.changes[-1].state if self.changes else None

    async def run(self, stop: asyncio.Event) -> None:
        previous = time.perf_counter()
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set():
                sent = time.perf_counter()
                match = BREAKER_LINE.search((await http.get(self.url)).text)
                seen = time.perf_counter()
                self.polls += 1
                value = float(match.group(1)) if match else 0.0
                if value != self.state:
                    self.changes.append(Change(seen, value, previous))
                    self.changed.set()
                previous = sent
                await asyncio.sleep(max(0.0, POLL_S - (seen - sent)))

    async def until(self, state: float, timeout_s: float) -> Change:
        """The change to `state`; raises TimeoutError if not seen within `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while self.state != state:
                self.changed.clear()
                await self.changed.wait()
            return self.changes[-1]

    def open_share(self, start: float, end: float) -> float:
        """Share of [start, end] the primary's circuit was seen open."""
        edges = [(c.seen, c.state) for c in self.changes] + [(end, -1.0)]
        open_s = sum(
            max(0.0, min(b, end) - max(a, start))
            for (a, state), (b, _) in itertools.pairwise(edges)
            if state == OPEN
        )
        return open_s / (end - start) if end > start else 0.0


# -- figures


def dist(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(pct(values, 0.5), 2), "p95": round(pct(values, 0.95), 2)}


def ttft_groups(turns: list[Turn]) -> dict[str, Any]:
    done = [t for t in turns if t.ok]
    direct = [t.ttft_ms for t in done if not t.failed_over]
    over = [t.ttft_ms for t in done if t.failed_over]
    after_error = [t.ttft_ms for t in done if t.failed_over and not t.skipped_open_circuit]
    skipped = [t.ttft_ms for t in done if t.skipped_open_circuit]
    groups: dict[str, Any] = {
        "not_failed_over": dist(direct),
        "failed_over": dist(over),
        "failed_over_after_errors": dist(after_error),
        "failed_over_circuit_open_only": dist(skipped),
    }
    for name, values in (("failed_over", over), ("failed_over_after_errors", after_error)):
        if values and direct:
            groups[f"added_ms_{name}"] = {
                q: round(pct(values, v) - pct(direct, v), 2)
                for q, v in (("p50", 0.5), ("p95", 0.95))
            }
    return groups


def fallback_codes(turns: list[Turn]) -> dict[str, int]:
    return dict(Counter(f"{f['target']} {f['code']}" for t in turns for f in t.fallbacks))


def turn_counts(turns: list[Turn]) -> dict[str, Any]:
    failed = [t for t in turns if not t.ok]
    return {
        "turns": len(turns),
        "client_failed": len(failed),
        "client_failed_share": round(len(failed) / len(turns), 4) if turns else None,
        "client_errors": dict(Counter(t.error for t in failed)),
        "served_by": dict(Counter(t.target for t in turns if t.ok)),
        "failed_over": sum(t.failed_over for t in turns if t.ok),
        "skipped_primary_circuit_open": sum(
            any(f["code"] == "circuit_open" for f in t.fallbacks) for t in turns if t.ok
        ),
        "fallback_codes": fallback_codes(turns),
    }


# -- the two phases


async def set_knobs(sim_url: str, patch: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{sim_url}/_sim/config", json=patch)).raise_for_status()


def primary_fails(rate: float) -> dict[str, Any]:
    return {"models": {"gpt-4o-mini": {"fail_rate": rate, "fail_status": 503}}}


async def steady(
    gw: str, sim_url: str, turns: int, concurrency: int, rate: float
) -> dict[str, Any]:
    """Phase 1: `turns` turns while the primary fails `rate` of its calls."""
    ws_url = gw.replace("http", "ws", 1)
    await set_knobs(sim_url, primary_fails(rate))
    watch, stop = BreakerWatch(f"{gw}/metrics"), asyncio.Event()
    users = [f"steady-{i}" for i in range(concurrency)]
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(watch.run(stop))
        start = time.perf_counter()
        done = await drive(ws_url, users, Tickets(turns))
        end = time.perf_counter()
        stop.set()
    result = {
        "primary_fail_rate": rate,
        "wall_s": round(end - start, 2),
        **turn_counts(done),
        "client_ttft_ms": ttft_groups(done),
        "primary_breaker": {
            "changes_s": [(round(c.seen - start, 3), c.state) for c in watch.changes],
            "open_share_of_run": round(watch.open_share(start, end), 3),
        },
    }
    await set_knobs(sim_url, {"models": {}})
    return result


async def death(
    gw: str, sim_url: str, concurrency: int, warm_s: float, limit_s: float
) -> dict[str, Any]:
    """Phase 2: healthy traffic, the primary dies at a recorded instant, the breaker opens."""
    ws_url = gw.replace("http", "ws", 1)
    watch, stop, tickets = BreakerWatch(f"{gw}/metrics"), asyncio.Event(), Tickets(None)
    users = [f"death-{i}" for i in range(concurrency)]
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(watch.run(stop))
        traffic = tasks.create_task(drive(ws_url, users, tickets))
        try:
            await asyncio.sleep(warm_s)
            state_before = watch.state
            died = time.perf_counter()
            await set_knobs(sim_url, primary_fails(1.0))
            knob_rtt = time.perf_counter() - died
            try:
                opened = await watch.until(OPEN, limit_s)
            except TimeoutError:
                opened = None
            await asyncio.sleep(0.5)  # a little traffic with the circuit open
        finally:
            tickets.stop.set()
            stop.set()
    await set_knobs(sim_url, {"models": {}})
    done = traffic.result()
    return death_figures(done, watch, died, opened, state_before, knob_rtt)


def death_figures(
    turns: list[Turn],
    watch: BreakerWatch,
    died: float,
    opened: Change | None,
    state_before: float | None,
    knob_rtt: float,
) -> dict[str, Any]:
    end = opened.seen if opened is not None else max((t.ended for t in turns), default=died)
    during = [t for t in turns if t.sent < end and t.ended > died]
    before = [t for t in turns if died - WINDOW_S <= t.sent < died]
    return {
        "breaker_state_before": state_before,
        "time_to_open_ms": None if opened is None else round((opened.seen - died) * 1000, 1),
        "time_to_open_lower_bound_ms": (
            None if opened is None else round(max(0.0, opened.previous_poll_sent - died) * 1000, 1)
        ),
        "poll_interval_ms": POLL_S * 1000,
        "knob_post_rtt_ms": round(knob_rtt * 1000, 2),
        "metrics_polls": watch.polls,
        "primary_calls_ok_in_window_before_death": sum(
            t.ok and t.target == PRIMARY and not t.fallbacks for t in before
        ),
        "turns_in_flight_until_open": {
            **turn_counts(during),
            "client_ttft_ms": ttft_groups(during),
        },
        "all_turns": turn_counts(turns),
    }


async def warm_backup(gw: str, requests: int) -> None:
    """Open the gateway's connections to the backup before anything is timed.

    Only the backup: a success on the primary would sit in its breaker window and hold the
    failure share below the threshold, so the primary's first connections are in the figures.
    """
    headers = {"Authorization": f"Bearer {mint_token('warm')}"}
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "warm up"}]}
    async with httpx.AsyncClient(base_url=gw, headers=headers, timeout=30) as http:
        replies = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body) for _ in range(requests))
        )
    for reply in replies:
        reply.raise_for_status()


def gateway_env(sim_url: str) -> dict[str, str]:
    return {
        "COACH_JWT_SECRET": SECRET,
        "COACH_PERSISTENCE": "false",
        "COACH_SIM_URL": sim_url,
        "COACH_QUOTAS__TURNS_PER_MINUTE": "100000",
        "COACH_QUOTAS__TOKENS_PER_DAY": "1000000000",
        "COACH_QUOTAS__CONCURRENT_STREAMS": "100",
        "COACH_QUOTAS__CONNECTIONS": "100",
        "COACH_LOG_LEVEL": "error",
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    exe = str(Path(sys.executable).with_name("coach-gateway"))
    sim_port, ports = free_port(), [free_port() for _ in range(3)]
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = gateway_env(sim_url)
    # A failure rate above 1 can never be reached: that gateway's breakers never open on errors.
    never_open = {**env, "COACH_BREAKER__FAILURE_RATE": "1.01"}
    gws = [f"http://127.0.0.1:{port}" for port in ports]
    with (
        process([exe, "sim-upstream", "--port", str(sim_port), *SIM_FLAGS], env),
        process([exe, "serve", "--port", str(ports[0])], env),
        process([exe, "serve", "--port", str(ports[1])], never_open),
        process([exe, "serve", "--port", str(ports[2])], env),
    ):
        for url in (f"{sim_url}/_sim/stats", *(f"{gw}/healthz" for gw in gws)):
            await wait_ready(url)
        result: dict[str, Any] = {}
        for name, gw in (("steady_faults", gws[0]), ("steady_faults_breaker_never_opens", gws[1])):
            await warm_backup(gw, args.concurrency)
            result[name] = await steady(gw, sim_url, args.turns, args.concurrency, args.fail_rate)
        result["primary_death"] = await death(
            gws[2], sim_url, args.concurrency, args.warm_s, args.open_limit_s
        )
    config = {
        "turns": args.turns,
        "concurrency": args.concurrency,
        "sim": " ".join(SIM_FLAGS),
        "breaker": "gateway defaults (window 30 s, min_calls 5, failure_rate 0.5, cooldown 15 s)"
        " except steady_faults_breaker_never_opens (failure_rate 1.01)",
        "retry": "gateway defaults (2 attempts per target, 50 ms base backoff)",
        "warm_up": f"{args.concurrency} requests to the backup only before each steady phase",
    }
    machine = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return {"config": config, **result, "machine": machine}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="turns of the steady phase")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent sessions")
    parser.add_argument("--fail-rate", type=float, default=0.5, help="primary's failure share")
    parser.add_argument("--warm-s", type=float, default=3.0, help="healthy traffic before death")
    parser.add_argument("--open-limit-s", type=float, default=30.0, help="wait at most this")
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    body = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(body)
    print(body.decode())


if __name__ == "__main__":
    main()
