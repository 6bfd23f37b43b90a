"""The hands-free loop through a gateway process (`python -m loadtests.micro.voice_bench
handsfree`).

A simulated upstream (default knobs: 20 ms first token, 200 tokens/s) and a gateway run as
child processes; this process is the client. Speech is made up front (piper, the phrases of
`loadtests.micro.voice_phrases`), then sent as 100 ms pcm16 frames in real time:

- end of speech to first reply audio, `server_vad` (the gateway finds the end) against
  push-to-talk with the commit sent the moment speech ends (the best a client can do);
- the WER of the final transcripts;
- barge-in: speech over a long spoken reply, from `input_audio.speech_started` (and from the
  first frame of speech sent) to the reply's `response.completed` (cancelled) at the client;
- another user's text-turn TTFT, alone and while two sessions talk hands-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

from gateway.auth import mint_token
from loadtests.bench_procs import BENCH_SECRET, free_port, gateway_env, sim_argv, started
from loadtests.bench_stats import summarize
from loadtests.micro.voice_phrases import PHRASES, spoken, word_error_rate

FRAME = 3200  # 100 ms of pcm16
LEAD = b"\x00\x00" * 4800  # 0.3 s of silence before speech
TAIL = b"\x00\x00" * 24000  # 1.5 s after it: server VAD needs the silence to hear the end


def gateway_argv(port: int, code: Path | None) -> list[str]:
    """`gateway.cli serve`, from `code` (another checkout, e.g. `git archive` of an older
    commit, for a before/after figure) when given."""
    if code is None:
        return [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    run = (
        f"import runpy, sys; sys.path.insert(0, {str(code)!r}); sys.argv[0] = 'gateway.cli'; "
        "runpy.run_module('gateway.cli', run_name='__main__')"
    )
    return [sys.executable, "-c", run, "serve", "--port", str(port)]


@contextlib.asynccontextmanager
async def servers(log_dir: Path, code: Path | None = None) -> AsyncIterator[tuple[str, str]]:
    """(gateway ws URL, sim URL): a sim and a gateway with voice, on loopback."""
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    env = gateway_env(sim_url)
    env["COACH_QUOTAS__AUDIO_SECONDS_PER_DAY"] = "100000000"
    for name in [n for n in os.environ if n.startswith("COACH_")]:
        env[name] = os.environ[name]
    gw_argv = gateway_argv(gw_port, code)
    async with (
        started("sim", sim_argv(sim_port, {}), f"{sim_url}/_sim/stats", log_dir=log_dir),
        started("gateway", gw_argv, f"{gw_url}/healthz", log_dir=log_dir, env=env),
    ):
        yield "ws" + gw_url.removeprefix("http"), sim_url


async def set_knobs(sim_url: str, **knobs: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sim_url}/_sim/config", json=knobs) as resp,
    ):
        resp.raise_for_status()


@contextlib.asynccontextmanager
async def session(ws_url: str, user: str, **config: Any) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {mint_token(BENCH_SECRET, user)}"}
    async with connect(f"{ws_url}/v1/realtime", additional_headers=headers) as ws:
        await ws.recv()  # session.created
        if config:
            await ws.send(orjson.dumps({"type": "session.update", "session": config}).decode())
            while (reply := orjson.loads(await ws.recv()))["type"] != "session.updated":
                if reply["type"] == "error":
                    raise RuntimeError(f"session.update refused: {reply}")
        yield ws


async def send_real_time(ws: ClientConnection, audio: bytes) -> float:
    """Send `audio` frame by frame at its own pace; the clock time its last frame went."""
    start = time.perf_counter()
    for n, i in enumerate(range(0, len(audio), FRAME)):
        await asyncio.sleep(max(0.0, start + n * 0.1 - time.perf_counter()))
        await ws.send(audio[i : i + FRAME])
    return time.perf_counter()


async def one_turn(ws: ClientConnection, speech: bytes, mode: str) -> dict[str, Any]:
    """Speak once; end of speech to first reply audio, and what the gateway heard."""
    events: list[tuple[float, dict[str, Any]]] = []

    async def receive() -> None:
        while True:
            event = orjson.loads(await ws.recv())
            events.append((time.perf_counter(), event))
            if event["type"] == "response.completed" and event["finish_reason"] != "cancelled":
                return
            if event["type"] in ("response.failed", "error"):
                return

    receiver = asyncio.create_task(receive())
    ended = await send_real_time(ws, LEAD + speech)
    if mode == "commit":
        await ws.send(orjson.dumps({"type": "input_audio.commit"}).decode())
        await asyncio.wait_for(receiver, 60)
    else:
        tail = asyncio.create_task(send_real_time(ws, TAIL))
        await asyncio.wait_for(receiver, 60)
        await tail
    first_audio = next((t for t, e in events if e["type"] == "response.audio"), None)
    heard = next((e["text"] for _, e in events if e["type"] == "transcript"), "")
    return {
        "eos_to_audio_ms": None if first_audio is None else (first_audio - ended) * 1000,
        "heard": heard,
        "errors": [e.get("code") for _, e in events if e["type"] == "error"],
    }


async def eos_to_audio(ws_url: str, mode: str, rounds: int) -> dict[str, Any]:
    config: dict[str, Any] = {"voice": {"output": True}}
    if mode == "server_vad":
        config["turn_detection"] = {"type": "server_vad"}
    clips = [(text, spoken(text)) for text in PHRASES]
    latencies, errors = [], []
    async with session(ws_url, f"speaker-{mode}", **config) as ws:
        await one_turn(ws, clips[0][1], mode)  # warm up: models load
        for n in range(rounds):
            text, pcm = clips[n % len(clips)]
            result = await one_turn(ws, pcm, mode)
            if result["eos_to_audio_ms"] is not None:
                latencies.append(result["eos_to_audio_ms"])
            errors.append(word_error_rate(text, result["heard"]))
    out = {"eos_to_first_audio_ms": summarize(latencies), "wer_mean": sum(errors) / len(errors)}
    print(f"{mode}: {out}", flush=True)
    return out


async def barge_in(ws_url: str, sim_url: str, rounds: int) -> dict[str, Any]:
    """Speech over a long spoken reply: speech_started to the reply's cancelled completion."""
    await set_knobs(sim_url, tokens_per_s=20, reply_tokens=400)
    stops, from_onset = [], []
    speech = spoken(PHRASES[1])
    config = {"voice": {"output": True}, "turn_detection": {"type": "server_vad"}}
    try:
        async with session(ws_url, "interrupter", **config) as ws:
            for n in range(rounds):
                await ws.send(
                    orjson.dumps(
                        {"type": "input_text", "text": "Talk", "turn_id": f"l{n}"}
                    ).decode()
                )
                while orjson.loads(await ws.recv())["type"] != "response.audio":
                    pass
                onset = time.perf_counter() + len(LEAD) / 32_000  # the first speech frame
                sender = asyncio.create_task(send_real_time(ws, LEAD + speech + TAIL))
                started_at = None
                while True:
                    event = orjson.loads(await ws.recv())
                    if event["type"] == "input_audio.speech_started":
                        started_at = time.perf_counter()
                    if event["type"] == "response.completed" and event["turn_id"] == f"l{n}":
                        now = time.perf_counter()
                        from_onset.append((now - onset) * 1000)
                        if started_at is not None:
                            stops.append((now - started_at) * 1000)
                        break
                await sender
                while orjson.loads(await ws.recv())["type"] != "response.completed":
                    pass  # the interruption's own answer
    finally:
        await set_knobs(sim_url, tokens_per_s=200, reply_tokens=40)
    out = {
        "speech_started_to_cancelled_ms": summarize(stops),
        "speech_onset_to_cancelled_ms": summarize(from_onset),
    }
    print(f"barge-in: {out}", flush=True)
    return out


async def text_ttft(ws_url: str, turns: int) -> tuple[list[float], list[float]]:
    """Another user's text turns, one after another: the client's TTFT of each, and the
    gateway's added TTFT (its `ttft_ms` minus the upstream's)."""
    ttft, added = [], []
    async with session(ws_url, "typist") as ws:
        for n in range(turns):
            sent = time.perf_counter()
            await ws.send(orjson.dumps({"type": "input_text", "text": f"Tip {n}?"}).decode())
            first = None
            while True:
                event = orjson.loads(await ws.recv())
                if event["type"] == "response.delta" and first is None:
                    first = time.perf_counter()
                if event["type"] in ("response.completed", "response.failed"):
                    break
            if first is not None:
                ttft.append((first - sent) * 1000)
            timings = event.get("timings") or {}
            if timings.get("upstream_ttft_ms") is not None:
                added.append(timings["ttft_ms"] - timings["upstream_ttft_ms"])
            await asyncio.sleep(0.05)
    return ttft, added


async def talker(ws_url: str, user: str, stop: asyncio.Event) -> int:
    """A hands-free session talking until `stop`: phrases, each answered aloud."""
    config = {"voice": {"output": True}, "turn_detection": {"type": "server_vad"}}
    clips = [spoken(text) for text in PHRASES]
    done = 0
    async with session(ws_url, user, **config) as ws:
        while not stop.is_set():
            await one_turn(ws, clips[done % len(clips)], "server_vad")
            done += 1
    return done


async def ttft_under_speech(ws_url: str, turns: int) -> dict[str, Any]:
    await text_ttft(ws_url, 10)  # warm up
    alone, alone_added = await text_ttft(ws_url, turns)
    stop = asyncio.Event()
    talkers = [asyncio.create_task(talker(ws_url, f"talker-{i}", stop)) for i in range(2)]
    await asyncio.sleep(3.0)  # both are speaking and being transcribed
    loaded, loaded_added = await text_ttft(ws_url, turns)
    stop.set()
    spoken_turns = sum(await asyncio.gather(*talkers))
    out = {
        "alone_ms": summarize(alone),
        "with_speech_ms": summarize(loaded),
        "added_alone_ms": summarize(alone_added),
        "added_with_speech_ms": summarize(loaded_added),
        "speech_turns_meanwhile": spoken_turns,
    }
    print(f"text TTFT: {out}", flush=True)
    return out


async def handsfree(turns: int, silence_ms: int | None, code: Path | None) -> dict[str, Any]:
    if silence_ms is not None:
        os.environ["COACH_VOICE__VAD_SILENCE_MS"] = str(silence_ms)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-voice-"))
    if code is not None:  # older code: push-to-talk only
        async with servers(log_dir, code) as (ws_url, _):
            return {
                "turns": turns,
                "code": str(code),
                "commit": await eos_to_audio(ws_url, "commit", turns),
            }
    async with servers(log_dir) as (ws_url, sim_url):
        result: dict[str, Any] = {"turns": turns, "logs": str(log_dir)}
        result["server_vad"] = await eos_to_audio(ws_url, "server_vad", turns)
        result["commit"] = await eos_to_audio(ws_url, "commit", turns)
        result["barge_in"] = await barge_in(ws_url, sim_url, max(3, turns // 3))
        result["text_ttft"] = await ttft_under_speech(ws_url, max(100, turns * 10))
    return result
