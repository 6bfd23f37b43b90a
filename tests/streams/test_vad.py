"""`SpeechGate`: speech start and end from per-window scores (pure, no model)."""

from __future__ import annotations

from streams.vad import SpeechGate


def _edges(gate: SpeechGate, scores: list[float]) -> list[tuple[int, str]]:
    return [(i, edge) for i, p in enumerate(scores) if (edge := gate.step(p)) is not None]


def test_speech_starts_after_the_start_run_and_stops_after_the_silence() -> None:
    gate = SpeechGate(0.5, silence_ms=320)  # 10 windows of 32 ms; a start takes 3
    scores = [0.1] * 5 + [0.9] * 20 + [0.05] * 12
    assert _edges(gate, scores) == [(7, "started"), (34, "stopped")]
    assert not gate.speaking


def test_a_click_is_not_speech() -> None:
    gate = SpeechGate(0.5, silence_ms=320)
    assert _edges(gate, [0.1, 0.9, 0.9, 0.1, 0.9, 0.1] * 5) == []


def test_a_pause_shorter_than_the_silence_does_not_end_speech() -> None:
    gate = SpeechGate(0.5, silence_ms=320)
    scores = [0.9] * 5 + [0.05] * 9 + [0.9] * 5 + [0.05] * 10
    assert _edges(gate, scores) == [(2, "started"), (28, "stopped")]


def test_scores_between_the_thresholds_keep_speech_going() -> None:
    # Below the start threshold but above threshold - 0.15: a soft word ending, not silence.
    gate = SpeechGate(0.5, silence_ms=96)
    assert _edges(gate, [0.9] * 3 + [0.4] * 20) == [(2, "started")]
    assert gate.speaking and gate.silent_ms == 0


def test_silent_ms_counts_the_pause_so_far() -> None:
    gate = SpeechGate(0.5, silence_ms=500)
    for p in [0.9] * 3 + [0.05] * 4:
        gate.step(p)
    assert gate.speaking and gate.silent_ms == 4 * 32
    gate.reset()
    assert not gate.speaking and gate.silent_ms == 0
