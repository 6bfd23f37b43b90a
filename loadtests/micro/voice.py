"""Speech benchmark: Whisper real-time factor and latency under concurrency, piper first audio.

    python -m loadtests.micro.voice [--rounds 5] [--concurrency 4] [--workers 1 2] [--out FILE]

Utterances are made by the bundled piper voice, so the run needs nothing but the installed
packages. Prints a table and writes the figures as JSON (`loadtests/results/voice.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from loadtests.bench_output import RESULTS
from providers.audio import SAMPLE_RATE, wav_to_pcm16
from providers.audio import resample_pcm16 as resample
from providers.stt import WhisperSTT
from providers.tts import EdgeTTS, FallbackTTS, PiperTTS, TextToSpeech

UTTERANCES = (
    "Yes.",
    "Can we try that again?",
    "I want to work on my breathing today.",
    "My voice cracks on the high notes when I sing the chorus loudly.",
    "Could you give me an exercise for pitch accuracy, something I can practice every morning"
    " for ten minutes before work?",
)
SENTENCES = (
    "Good.",
    "Relax your shoulders before the next phrase.",
    "Your pitch was steady, but the long notes drifted a little flat near the end of the line.",
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 1),
        "p50": round(pct(values, 0.5), 1),
        "p95": round(pct(values, 0.95), 1),
        "max": round(max(values), 1),
    }


async def make_utterances(piper: PiperTTS) -> list[bytes]:
    out = []
    for text in UTTERANCES:
        pcm = b""
        async for chunk in piper.synthesize(text):
            raw, rate = wav_to_pcm16(chunk.audio)
            pcm += resample(raw, rate, SAMPLE_RATE)
        pad = b"\x00\x00" * (SAMPLE_RATE // 4)
        out.append(pad + pcm + pad)
    return out


async def bench_rtf(utterances: list[bytes], vad: bool) -> dict[str, Any]:
    """One utterance at a time: latency and real-time factor (processing / audio duration)."""
    stt = WhisperSTT(vad_filter=vad)
    started = time.perf_counter()
    await stt.load()
    load_ms = (time.perf_counter() - started) * 1000
    await stt.transcribe(utterances[0], "pcm16")  # warm-up
    rows: list[dict[str, Any]] = []
    total_audio = total_stt = 0
    for audio in utterances:
        result = await stt.transcribe(audio, "pcm16")
        total_audio += result.audio_ms
        total_stt += result.stt_ms
        rows.append(
            {
                "audio_ms": result.audio_ms,
                "stt_ms": result.stt_ms,
                "rtf": round(result.stt_ms / result.audio_ms, 3),
                "text": result.text,
            }
        )
    await stt.aclose()
    return {
        "vad_filter": vad,
        "load_ms": round(load_ms),
        "rtf_overall": round(total_stt / total_audio, 3),
        "utterances": rows,
    }


async def bench_concurrency(
    utterances: list[bytes], workers: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    """`concurrency` utterances at once, `rounds` times: latency as a user sees it (queue wait
    included) and throughput."""
    stt = WhisperSTT(workers=workers, queue=concurrency)
    await stt.load()
    await stt.transcribe(utterances[1], "pcm16")
    latencies: list[float] = []
    audio_ms = 0
    started = time.perf_counter()
    for r in range(rounds):
        batch = [utterances[(r + i) % len(utterances)] for i in range(concurrency)]
        results = await asyncio.gather(*(stt.transcribe(a, "pcm16") for a in batch))
        latencies += [float(t.stt_ms) for t in results]
        audio_ms += sum(t.audio_ms for t in results)
    wall_s = time.perf_counter() - started
    await stt.aclose()
    return {
        "workers": workers,
        "concurrency": concurrency,
        "latency_ms": summary(latencies),
        "audio_s_per_wall_s": round(audio_ms / 1000 / wall_s, 2),
    }


async def first_audio_ms(tts: TextToSpeech, text: str) -> tuple[float, float]:
    """(ms to the first chunk, seconds of audio in total)."""
    started = time.perf_counter()
    first: float | None = None
    seconds = 0.0
    async for chunk in tts.synthesize(text):
        if first is None:
            first = (time.perf_counter() - started) * 1000
        seconds += chunk.duration_s()
    assert first is not None
    return first, seconds


async def bench_piper(rounds: int) -> dict[str, Any]:
    piper = PiperTTS()
    started = time.perf_counter()
    await piper.load()
    load_ms = (time.perf_counter() - started) * 1000
    await first_audio_ms(piper, "Warm up.")
    by_sentence = []
    for text in SENTENCES:
        runs = [await first_audio_ms(piper, text) for _ in range(rounds)]
        firsts = [r[0] for r in runs]
        by_sentence.append(
            {
                "chars": len(text),
                "audio_s": round(runs[0][1], 2),
                "first_audio_ms": summary(firsts),
                "rtf": round(statistics.fmean(firsts) / 1000 / runs[0][1], 3),
            }
        )
    fallback = FallbackTTS([EdgeTTS(), piper])
    with_failover, _ = await first_audio_ms(fallback, SENTENCES[1])
    edge_skipped, _ = await first_audio_ms(fallback, SENTENCES[1])
    await piper.aclose()
    return {
        "load_ms": round(load_ms),
        "sentences": by_sentence,
        "fallback_first_audio_ms": {
            "edge_failure_then_piper": round(with_failover, 1),
            "edge_in_cooldown": round(edge_skipped, 1),
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    piper = PiperTTS()
    utterances = await make_utterances(piper)
    await piper.aclose()
    report: dict[str, Any] = {"stt_sequential": [], "stt_concurrent": []}
    for vad in (False, True):
        report["stt_sequential"].append(await bench_rtf(utterances, vad))
    for workers in args.workers:
        report["stt_concurrent"].append(
            await bench_concurrency(utterances, workers, args.concurrency, args.rounds)
        )
    report["piper"] = await bench_piper(args.rounds)
    return report


def print_report(report: dict[str, Any]) -> None:
    print("STT (faster-whisper tiny.en int8, beam 1), one utterance at a time")
    for row in report["stt_sequential"]:
        vad, load, rtf = row["vad_filter"], row["load_ms"], row["rtf_overall"]
        print(f"  vad_filter={vad!s:5}  load {load} ms  RTF {rtf}")
        for u in row["utterances"]:
            timing = f"{u['audio_ms']:>6} ms audio -> {u['stt_ms']:>5} ms (RTF {u['rtf']})"
            print(f"    {timing}  {u['text']!r}")
    print("STT under concurrency (latency includes queue wait)")
    for row in report["stt_concurrent"]:
        lat = row["latency_ms"]
        print(
            f"  workers={row['workers']} concurrency={row['concurrency']}  p50 {lat['p50']} ms"
            f"  p95 {lat['p95']} ms  max {lat['max']} ms  n={lat['n']}"
            f"  throughput {row['audio_s_per_wall_s']} audio-s/s"
        )
    piper = report["piper"]
    print(f"Piper (joe medium) load {piper['load_ms']} ms; first audio per sentence")
    for row in piper["sentences"]:
        fa = row["first_audio_ms"]
        print(
            f"  {row['chars']:>3} chars ({row['audio_s']} s audio): p50 {fa['p50']} ms"
            f"  p95 {fa['p95']} ms  RTF {row['rtf']}"
        )
    fb = piper["fallback_first_audio_ms"]
    print(
        f"  FallbackTTS(edge offline, piper): first call {fb['edge_failure_then_piper']} ms,"
        f" edge in cooldown {fb['edge_in_cooldown']} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "voice.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
