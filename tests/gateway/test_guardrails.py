"""The guardrails before the model, on tables of what they must and must not catch."""

from __future__ import annotations

import pytest

from gateway.guardrails import mask_pii, safety_answer, safety_concern
from gateway.settings import AgentSettings

MASKED = [
    ("call me at +1 415 555 0123", "call me at [phone]"),
    ("(415) 555-0123 works", "[phone] works"),
    ("it's 415-555-0123.", "it's [phone]."),
    ("415.555.0123", "[phone]"),
    ("+44 20 7946 0958 or 07700 900123", "[phone] or [phone]"),
    ("my number is 4155550123", "my number is [phone]"),
    ("+491701234567", "[phone]"),
    ("ring 020 7946 0958 after six", "ring [phone] after six"),
    ("06 12 34 56 78", "[phone]"),
    ("text 555-0123", "text [phone]"),
    ("mail jane.doe+coach@example.co.uk please", "mail [email] please"),
    ("Me: a@b.io, phone 415 555 0123", "Me: [email], phone [phone]"),
]

KEPT = [
    "3 sets of 10 reps",
    "120 bpm for 4 bars",
    "at 10:30 tomorrow",
    "I started in 2024",
    "from 2019-2024",
    "on 2024-05-01 and 12.05.2024",
    "practise 4x8 minutes",
    "scored 7/10",
    "between 60 and 80 bpm",
    "10 20 30 40 reps",
    "100,000 steps",
    "pi is 3.14159",
    "tempo 60-120",
    "5 x 5 at 100 kg",
    "lap in 1:02.45",
    "sing 440 Hz",
    "run 5000 m in 20 min",
    "version 1.2.3",
    "an @mention and email me",
]


@pytest.mark.parametrize(("text", "masked"), MASKED)
def test_phone_numbers_and_emails_are_masked(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


@pytest.mark.parametrize("text", KEPT)
def test_coaching_numbers_are_not_masked(text: str) -> None:
    assert mask_pii(text) == text


INJURY = [
    "my knee hurts when I squat",
    "sharp pain in my wrist",
    "My lower back is killing me after deadlifts",
    "I think I pulled a muscle",
    "I hurt myself squatting",
    "it hurts when I sing high notes",
    "I have a sore throat and keep singing",
    "my shoulder popped during the press",
    "chest pain when running",
    "I sprained my ankle yesterday",
    "My fingers hurt from the strings",
    "I think it's an injury",
    "I got injured at practice",
    "pain in my neck when I look up",
    "I felt dizzy and fainted after the set",
]
SELF_HARM = [
    "I want to hurt myself",
    "I'm thinking about ending my life",
    "sometimes I want to die",
    "I feel like killing myself",
    "I've been having suicidal thoughts",
    "I don't want to live anymore",
]
ROUTINE = [
    "this song is killing it",
    "pain-free practice?",
    "how do I avoid injury when lifting",
    "no pain no gain?",
    "you killed it today",
    "the high notes are a pain",
    "warm up to prevent injuries",
    "I'm dying to try the new drill",
    "how to sing without straining",
    "this drill hurts my pride haha",
    "what is injury prevention",
    "Let's do 3 sets of 10 reps",
    "How do I keep my back straight during squats?",
    "how do I breathe from the chest",
    "hit the high notes painlessly",
]


@pytest.mark.parametrize("text", INJURY)
def test_pain_and_injury_are_caught(text: str) -> None:
    assert safety_concern(text) == "injury"


@pytest.mark.parametrize("text", SELF_HARM)
def test_self_harm_is_caught(text: str) -> None:
    assert safety_concern(text) == "self_harm"


@pytest.mark.parametrize("text", ROUTINE)
def test_routine_coaching_is_not_a_concern(text: str) -> None:
    assert safety_concern(text) is None


def test_the_answers_come_from_the_settings() -> None:
    defaults = AgentSettings()
    assert "doctor" in safety_answer("injury", defaults)
    assert "emergency" in safety_answer("self_harm", defaults)
    custom = AgentSettings(safety_text="Stop now.", crisis_text="Call 112.")
    assert safety_answer("injury", custom) == "Stop now."
    assert safety_answer("self_harm", custom) == "Call 112."
