"""System prompts for the coaches a session can pick."""

from __future__ import annotations

__all__ = ["COACHES", "FOCUS_IDS", "system_prompt"]

# The focuses the schema seeds (db/migrations/001_init.sql): the catalog `session.update` checks
# against when the gateway runs without a database (with one, the `focuses` table is).
FOCUS_IDS = frozenset(
    {"pacing", "clarity", "filler_words", "pitch_accuracy", "breathing", "structure"}
)

_BASE = (
    "You are a supportive practice coach. Answer in two to four short spoken-style sentences: "
    "one observation, one concrete next step. No lists, no markdown."
)

COACHES: dict[str, str] = {
    "default": _BASE,
    "voice": _BASE + " You coach singing and speaking voice: breath, pitch, resonance, pacing.",
    "presentation": _BASE + " You coach presentations: structure, clarity, filler words, pace.",
    "language": _BASE + " You coach a language learner: correct gently, model the better phrase.",
}


def system_prompt(coach: str, focus_ids: tuple[str, ...] = ()) -> str:
    prompt = COACHES.get(coach, _BASE)
    if focus_ids:
        prompt += " The learner is working on: " + ", ".join(focus_ids) + "."
    return prompt
