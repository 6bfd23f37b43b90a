"""What the guardrails cost per turn: `mask_pii` and `safety_concern` on user messages.

Runs both on a mix of messages (routine coaching, numbers that must stay, a phone number, an
e-mail address, an injury report) of three lengths: a short chat line (~60 characters), a
paragraph (~600) and the longest message a turn takes (16,000 characters). Prints microseconds
per message, best of `--rounds`, and writes `loadtests/results/guardrails.json`.

    python -m loadtests.micro.guardrails [--messages 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from gateway.guardrails import mask_pii, safety_concern

RESULTS = Path(__file__).parents[1] / "results"
LINES = (
    "How do I keep my tempo steady at 120 bpm for 4 bars?",
    "Did 3 sets of 10 reps at 60 kg, felt good. What next?",
    "Call me at +1 415 555 0123 if the session moves.",
    "Send the drills to jane.doe@example.com please.",
    "My knee hurts when I squat below parallel.",
    "I practised from 2019-2024, scored 7/10 on 2024-05-01.",
)
MAX_TEXT = 16_000


def _messages(size: int) -> list[str]:
    out = []
    for index, line in enumerate(LINES):
        text = line
        while len(text) < size:
            text += " " + LINES[(index + len(text)) % len(LINES)]
        out.append(text[:size] if size > 60 else line)
    return out


def _time(messages: list[str], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for index in range(count):
            text = messages[index % len(messages)]
            mask_pii(text)
            safety_concern(text)
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = {}
    for label, size, count in (
        ("line", 60, args.messages),
        ("paragraph", 600, args.messages // 10),
        ("max", MAX_TEXT, max(10, args.messages // 200)),
    ):
        per = _time(_messages(size), count, args.rounds)
        figures[label] = round(per, 1)
        print(f"{label:>9} ({size:>6} chars): {per:8.1f} us per message (mask_pii + safety)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guardrails.json").write_bytes(orjson.dumps({"us_per_message": figures}))


if __name__ == "__main__":
    main()
