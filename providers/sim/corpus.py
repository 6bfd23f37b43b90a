"""The sim's words: a small corpus of coaching tips, cut into word-ish tokens.

A token is a word plus the space that follows it, so joining tokens gives the text back.
"""

from __future__ import annotations

import hashlib
import random
import re

__all__ = ["SENTENCES", "reply_rng", "reply_text", "slug", "tokenize"]

SENTENCES: tuple[str, ...] = (
    "Practice in short focused blocks of ten minutes, then rest for two.",
    "Breathe low into your belly before each phrase so the air is ready.",
    "Keep your shoulders loose and let your jaw hang freely.",
    "Slow the tempo down until every note feels easy, then speed up gradually.",
    "Record yourself once a day and listen back with fresh ears.",
    "Match the pitch with a gentle hum before you add the words.",
    "Stand tall with your weight balanced evenly over both feet.",
    "Pause for a full breath between ideas so your listener can keep up.",
    "Warm up with lip trills for two minutes before singing anything hard.",
    "Pick one small goal for this session and measure it at the end.",
    "Count the beat out loud when a passage keeps slipping away from you.",
    "Relax your tongue and let the vowel shape do the work.",
    "Exhale slowly on a hiss to build steady breath support.",
    "Mark the hardest bar and practise it three times in a row without mistakes.",
    "Speak a little slower than feels natural; it will sound calm to others.",
    "Keep your chin level so your throat stays open.",
    "Use a drone note to check that your intervals are in tune.",
    "End each practice with something you enjoy playing.",
    "Notice where you hold tension and release it on the out breath.",
    "Aim for consistency first and volume second.",
    "Slide slowly between the two notes and listen for the exact target pitch.",
    "Take a sip of water and rest your voice when it starts to feel dry.",
    "Vary the pace of your sentences to keep the audience with you.",
    "Roll your shoulders back and let your chest stay open.",
    "Repeat the phrase with a metronome at a tempo you can control.",
    "Breathe in through your nose for four counts and out for six.",
    "Sustain one note for as long as it stays steady and even.",
    "Practise the ending first so the finish feels the most secure.",
    "Place the sound forward, as if it rings just behind your teeth.",
    "Write down one thing that improved today and one thing to try tomorrow.",
    "Plant your feet and soften your knees before you begin.",
    "Keep the rhythm steady even when the melody becomes difficult.",
    "Listen to a reference recording and copy its phrasing.",
    "Smile slightly on high notes to brighten the tone.",
    "Check your posture in a mirror every few minutes.",
    "Let each breath fill your back and sides, not just your chest.",
    "Break long passages into small chunks and link them one by one.",
    "Rest is part of practice; short breaks help the skill settle.",
    "Tune your instrument before every session, even if it sounds fine.",
    "Celebrate small progress, because steady gains add up quickly.",
)

_TOKEN = re.compile(r"\S+\s*")


def tokenize(text: str) -> list[str]:
    """Cut `text` into tokens, each a word with its trailing space."""
    return _TOKEN.findall(text)


def reply_rng(seed: int, *parts: str) -> random.Random:
    """A generator seeded by the sim seed and the request content, for reproducible replies."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(seed).encode())
    for part in parts:
        digest.update(b"\0")
        digest.update(part.encode())
    return random.Random(int.from_bytes(digest.digest(), "big"))


def reply_text(rng: random.Random, approx_tokens: int) -> str:
    """Whole sentences from the corpus, at least `approx_tokens` tokens long (one at minimum)."""
    sentences: list[str] = []
    count = 0
    while not sentences or count < approx_tokens:
        sentence = rng.choice(SENTENCES)
        sentences.append(sentence)
        count += len(sentence.split())
    return " ".join(sentences)


def slug(rng: random.Random) -> str:
    """A short key such as `breath-support`, made of corpus words."""
    words = [w.strip(".,;").lower() for w in rng.choice(SENTENCES).split()]
    long_words = [w for w in words if len(w) > 3 and w.isalpha()] or ["practice"]
    first = rng.choice(long_words)
    second = rng.choice(long_words)
    return first if first == second else f"{first}-{second}"
