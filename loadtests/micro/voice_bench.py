"""Voice benchmark: Whisper's decoding settings, and the hands-free loop through the gateway.

    python -m loadtests.micro.voice_bench beams [--beams 1 2 3 5] [--threads 1]
    python -m loadtests.micro.voice_bench handsfree [--turns 8]

`beams`: word error rate and transcription latency per beam size on phrases no test uses
(`loadtests.micro.voice_phrases`: three speeds and one noisy reading each). `handsfree`
(`loadtests.micro.handsfree`): end of speech to first reply audio, the WER of the final
transcripts, barge-in, and another session's TTFT with and without speech load. Prints the
figures and writes them as JSON under `loadtests/results/`.
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
from loadtests.micro.voice_phrases import PHRASES, STYLES, spoken, word_error_rate
from providers.stt import WhisperSTT


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 3),
        "p50": round(pct(values, 0.5), 1),
        "p95": round(pct(values, 0.95), 1),
        "max": round(max(values), 1),
    }


async def beams(sizes: list[int], threads: int, vad_filter: bool) -> list[dict[str, Any]]:
    """One row per beam size: mean WER and stt_ms over every phrase in every style."""
    clips = [(text, spoken(text, *style[1:])) for text in PHRASES for style in STYLES]
    rows = []
    for beam in sizes:
        stt = WhisperSTT(beam_size=beam, cpu_threads=threads, vad_filter=vad_filter)
        try:
            await stt.transcribe(clips[0][1], "pcm16")  # load and warm up
            errors: list[float] = []
            times: list[float] = []
            worst = (0.0, "")
            for text, pcm in clips:
                heard = await stt.transcribe(pcm, "pcm16")
                wer = word_error_rate(text, heard.text)
                errors.append(wer)
                times.append(float(heard.stt_ms))
                worst = max(worst, (wer, heard.text))
        finally:
            await stt.aclose()
        audio_s = sum(len(pcm) for _, pcm in clips) / 32_000
        stt_ms = summary(times)
        row: dict[str, Any] = {
            "beam_size": beam,
            "vad_filter": vad_filter,
            "cpu_threads": threads,
            "wer_mean": round(statistics.fmean(errors), 3),
            "wer_max": round(max(errors), 3),
            "stt_ms": stt_ms,
            "rtf": round(sum(times) / 1000 / audio_s, 3),
            "worst": worst[1],
        }
        print(
            f"beam {beam}: WER mean {row['wer_mean']:.3f} max {row['wer_max']:.3f}, "
            f"stt p50 {stt_ms['p50']} ms p95 {stt_ms['p95']} ms, "
            f"RTF {row['rtf']}  worst: {worst[1]!r}",
            flush=True,
        )
        rows.append(row)
    return rows


def write(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    b = sub.add_parser("beams")
    b.add_argument("--beams", type=int, nargs="+", default=[1, 2, 3, 5])
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--no-vad-filter", action="store_true")
    h = sub.add_parser("handsfree")
    h.add_argument("--turns", type=int, default=8)
    h.add_argument("--silence-ms", type=int, default=None)
    h.add_argument("--code", type=Path, default=None, help="serve this checkout (push-to-talk)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.part == "beams":
        rows = asyncio.run(beams(args.beams, args.threads, not args.no_vad_filter))
        write("voice_beams", rows)
    else:
        from loadtests.micro.handsfree import handsfree

        name = "voice_handsfree" if args.code is None else "voice_handsfree_before"
        write(name, asyncio.run(handsfree(args.turns, args.silence_ms, args.code)))
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
