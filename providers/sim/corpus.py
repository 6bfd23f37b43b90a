"""The sim's words: coaching sentences by domain, the domain a text is about, and tokens.

A token is a word plus the space that follows it, so joining tokens gives the text back. The
domain of a text comes from a small keyword table (the most keyword hits win; none -> general).
"""

from __future__ import annotations

import hashlib
import random
import re

from providers.sim.sentences import DOMAINS, SENTENCES_BY

__all__ = [
    "DOMAINS",
    "SENTENCES",
    "domain_of",
    "reply_rng",
    "reply_text",
    "sentences",
    "slug",
    "tokenize",
]

SENTENCES: tuple[str, ...] = tuple(
    sentence for by_kind in SENTENCES_BY.values() for kind in by_kind.values() for sentence in kind
)  # every sentence of every domain


def _keys(words: str) -> frozenset[str]:
    return frozenset(words.split())


_KEYWORDS: dict[str, frozenset[str]] = {  # domain -> words that name it
    "strength": _keys(
        "bench press presses pressing squat squats squatting deadlift deadlifts lift lifts "
        "lifting lifter barbell dumbbell dumbbells kettlebell bar rep reps sets gym weight "
        "weights weightlifting powerlifting muscle muscles strength workout workouts pullup "
        "pullups pushup pushups plank grip overhead row rows spotter plates lockout 1rm brace"
    ),
    "music": _keys(
        "piano guitar violin viola cello bass drum drums drumming instrument instruments scale "
        "scales chord chords arpeggio arpeggios metronome tempo fingering "
        "etude etudes music musical musician play playing repertoire intonation bow strum "
        "keyboard trumpet flute saxophone clarinet passage drone tones tuner interval intervals"
    ),
    "voice": _keys(
        "sing sings singing singer song songs vocal vocals voice voices pitch breath breathing "
        "speech speak speaking speaker presentation presentations talk talks audience "
        "public pacing filler fillers stage slides hum vowel vowels choir karaoke diction "
        "articulation clarity pitches harmony falsetto hiss lyric lyrics diaphragm"
    ),
}
_WORD = re.compile(r"[a-z0-9]+")
# Not the topic: lines of allowed ids, and focus ids given as JSON data (a user's focus list
# names every focus, whatever the question is about).
_NOT_TOPIC = re.compile(
    r"^\s*ALLOWED_[A-Z_]*IDS:.*$|\"focus_ids?\"\s*:\s*(\[[^\]]*\]|\"[^\"]*\")", re.MULTILINE
)
_TOKEN = re.compile(r"\S+\s*")


def domain_of(*texts: str) -> str:
    """The domain of the first of `texts` that names one, else general.

    In a text, the most keyword hits win (ties in table order). Lines of allowed ids
    (`ALLOWED_DRILL_IDS: ...`) and JSON `"focus_id"`/`"focus_ids"` values are catalog
    and settings, not the topic, so they do not count.
    """
    for text in texts:
        if (domain := _domain(_NOT_TOPIC.sub("", text))) != "general":
            return domain
    return "general"


def _domain(text: str) -> str:
    words = _WORD.findall(text.lower())
    hits = {domain: sum(w in keys for w in words) for domain, keys in _KEYWORDS.items()}
    best = max(hits, key=lambda domain: hits[domain])
    return best if hits[best] > 0 else "general"


def sentences(domain: str, kind: str = "tip") -> tuple[str, ...]:
    """The corpus sentences of `kind` in `domain` (an unknown domain reads as general)."""
    return SENTENCES_BY.get(domain, SENTENCES_BY["general"])[kind]


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


def reply_text(rng: random.Random, approx_tokens: int, domain: str = "general") -> str:
    """Whole tips of `domain`, at least `approx_tokens` tokens long (one sentence at minimum)."""
    pool = sentences(domain)
    chosen: list[str] = []
    count = 0
    while not chosen or count < approx_tokens:
        sentence = rng.choice(pool)
        chosen.append(sentence)
        count += len(sentence.split())
    return " ".join(chosen)


def slug(rng: random.Random, domain: str = "general") -> str:
    """A short key such as `breath-support`, made of words from the tips of `domain`."""
    words = [w.strip(".,;").lower() for w in rng.choice(sentences(domain)).split()]
    long_words = [w for w in words if len(w) > 3 and w.isalpha()] or ["practice"]
    first = rng.choice(long_words)
    second = rng.choice(long_words)
    return first if first == second else f"{first}-{second}"
