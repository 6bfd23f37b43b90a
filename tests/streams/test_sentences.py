"""SentenceChunker: sentences out of token deltas, as soon as they end."""

from __future__ import annotations

import pytest

from streams.sentences import SentenceChunker


def chunk(text: str, *, step: int = 1, max_chars: int = 240) -> list[str]:
    """Feed `text` in pieces of `step` characters; the flushed rest comes last."""
    chunker = SentenceChunker(max_chars)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.feed(text[i : i + step])
    rest = chunker.flush()
    return [*out, rest] if rest else out


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_same_sentences_whatever_the_delta_size(step: int) -> None:
    text = "Great job today! Your pitch was steady. Did the breathing help? Let's try again."
    assert chunk(text, step=step) == [
        "Great job today!",
        "Your pitch was steady.",
        "Did the breathing help?",
        "Let's try again.",
    ]


def test_sentence_is_yielded_as_soon_as_the_next_one_starts() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Nice work!") == []  # could still be "!!" or a closing quote
    assert chunker.feed(" ") == ["Nice work!"]
    assert chunker.feed("Now the") == []
    assert chunker.flush() == "Now the"
    assert chunker.flush() is None


def test_period_waits_for_the_next_word() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Hold it. ") == []  # "Hold it. and then" would not split
    assert chunker.feed("Then") == ["Hold it."]


@pytest.mark.parametrize(
    "text",
    [
        "Use a warm-up, e.g. lip trills or humming.",
        "Use a warm-up, i.e. something gentle.",
        "Ask Mr. Smith or Dr. Jones about it.",
        "The tempo went from 3.5 to 4.25 beats per second.",
        "Version 2.0.1 is out.",
        "Read J. S. Bach first.",
        "It costs approx. ten dollars.",
        "Bring scores, pencils, etc. and water.",
    ],
)
def test_no_split_inside_abbreviations_decimals_and_initials(text: str) -> None:
    assert chunk(text) == [text]


def test_ellipsis_and_unicode_terminators() -> None:
    assert chunk("Well… Let me think. Hmm... OK then.") == [
        "Well…",
        "Let me think.",
        "Hmm...",
        "OK then.",
    ]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert chunk('She said "sing it again." Then she left. (Quietly.) Done.') == [
        'She said "sing it again."',
        "Then she left.",
        "(Quietly.)",
        "Done.",
    ]


def test_line_breaks_and_numbered_lists() -> None:
    text = "Three steps:\n1. Breathe in\n2. Hold it\n3. Sing out"
    assert chunk(text) == ["Three steps:", "1. Breathe in", "2. Hold it", "3. Sing out"]


def test_question_and_exclamation_runs() -> None:
    assert chunk("Really?! Yes!!! Go.") == ["Really?!", "Yes!!!", "Go."]


def test_no_punctuation_at_the_end_is_flushed() -> None:
    assert chunk("First. and a trailing fragment") == ["First. and a trailing fragment"]
    assert chunk("") == []
    assert chunk("   ") == []


def test_long_sentence_is_cut_at_a_comma() -> None:
    clause = "keep the air flowing steadily through the phrase"
    text = f"{clause}, {clause}, {clause}, {clause}."
    pieces = chunk(text, max_chars=120)
    assert all(len(p) <= 120 for p in pieces)
    assert all(p.endswith((",", ".")) for p in pieces)
    assert " ".join(pieces) == text


def test_long_run_without_commas_is_cut_at_a_space() -> None:
    text = " ".join(["word"] * 100)
    pieces = chunk(text, max_chars=50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces) == text


def test_long_run_without_spaces_is_cut_hard() -> None:
    pieces = chunk("x" * 130, max_chars=50)
    assert [len(p) for p in pieces] == [50, 50, 30]


def test_nothing_is_lost() -> None:
    text = (
        "Okay. So, here's the plan: warm up for 5.5 minutes, e.g. scales! Then? "
        "We record. Mr. T. approves… And that's it"
    )
    assert " ".join(chunk(text, step=2)) == text


def test_max_chars_must_be_sane() -> None:
    with pytest.raises(ValueError):
        SentenceChunker(5)
