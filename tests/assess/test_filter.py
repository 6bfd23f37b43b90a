"""The cheap filter's decisions."""

from __future__ import annotations

from assess.filter import TurnFacts, decide

LONG = " ".join(["word"] * 40)


def scope(
    text: str,
    buffered: int = 0,
    *,
    reply: str = "Sure, here is a tip.",
    status: str = "completed",
    audio: int = 0,
) -> str:
    facts = TurnFacts(text, reply, status, audio)
    return decide(facts, buffered, min_turns=3, max_turns=6)


def test_chitchat_and_failed_turns_are_skipped() -> None:
    assert scope("hi") == "none"
    assert scope("thanks, ok!") == "none"
    assert scope("good morning") == "none"
    assert scope("How should I pace this intro?", status="failed", reply="") == "none"


def test_substantial_turns_stand_alone() -> None:
    assert scope(LONG) == "interaction"
    assert scope("Here is my take on it", audio=15_000) == "interaction"


def test_short_turns_buffer_until_enough() -> None:
    assert scope("How do I stop saying um?", buffered=0) == "buffer"
    assert scope("How do I stop saying um?", buffered=1) == "buffer"
    assert scope("How do I stop saying um?", buffered=2) == "multi_turn"
