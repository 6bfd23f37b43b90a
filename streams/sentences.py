"""Cut a stream of token deltas into sentences, each as soon as it has ended.

Text-to-speech works a sentence at a time, so the first sentence can be spoken while the model is
still writing the second. A sentence ends at `.`, `!`, `?` or `…` (with any closing quotes or
brackets) followed by white space, or at a line break. A `.` does not end one after a known
abbreviation ("Mr.", "e.g."), a single initial ("J."), a list number at the start of a line
("1."), or when the next word starts in lower case; "3.5" never splits because no space follows
the dot. A sentence longer than `max_chars` is cut at the last comma, semicolon or colon (else at
the last space) so speech never waits on a run-on sentence.
"""

from __future__ import annotations

__all__ = ["SentenceChunker"]

TERMINATORS = frozenset(".!?\u2026\u3002\uff01\uff1f")  # ellipsis and the CJK full stops
CLOSERS = frozenset("\"')]\u00bb\u201d\u2019")
OPENERS = "\"'([*_\u00ab\u201c\u2018"
SOFT_CUTS = (", ", "; ", ": ", " - ", " \u2013 ", " \u2014 ")
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "eg", "ie", "cf",
     "approx", "fig", "al", "inc", "ltd", "mt", "min", "max", "ca", "resp"}
)  # fmt: skip


class SentenceChunker:
    """Feed token deltas, get whole sentences back; `flush()` returns what is left at the end."""

    def __init__(self, max_chars: int = 240) -> None:
        if max_chars < 20:
            raise ValueError("max_chars must be at least 20")
        self.max_chars = max_chars
        self._buf = ""
        self._pos = 0  # where scanning resumes: everything before it is known not to end a sentence

    def feed(self, delta: str) -> list[str]:
        """Add `delta`; return the sentences it completed (possibly none)."""
        self._buf += delta
        out: list[str] = []
        while (end := self._next_end()) is not None:
            sentence, self._buf, self._pos = self._buf[:end].strip(), self._buf[end:].lstrip(), 0
            if sentence:
                out.append(sentence)
        return out

    def flush(self) -> str | None:
        """The unfinished rest, stripped, or None if there is none; resets the chunker."""
        rest, self._buf, self._pos = self._buf.strip(), "", 0
        return rest or None

    def _next_end(self) -> int | None:
        buf = self._buf
        i = self._pos
        while i < len(buf):
            char = buf[i]
            if char == "\n" and buf[:i].strip():
                return i
            if char in TERMINATORS:
                decision = self._terminator_end(i)
                if decision is None:  # needs more text to decide
                    self._pos = i
                    return self._long_cut()
                if decision > 0:
                    return decision
            i += 1
        self._pos = i
        return self._long_cut()

    def _terminator_end(self, i: int) -> int | None:
        """End index of the sentence if the terminator at `i` ends one, 0 if not, None: unknown."""
        buf = self._buf
        end = i
        while end < len(buf) and (buf[end] in TERMINATORS or buf[end] in CLOSERS):
            end += 1
        if end == len(buf):
            return None
        if not buf[end].isspace():
            return 0
        if buf[i] == "." and set(buf[i:end]) <= {".", *CLOSERS}:
            return self._period_end(i, end)
        return end

    def _period_end(self, i: int, end: int) -> int | None:
        buf = self._buf
        line_start = buf.rfind("\n", 0, i) + 1
        word = buf[line_start:i].split()[-1:] or [""]
        token = word[0].lstrip(OPENERS)
        lower = token.lower()
        if lower in ABBREVIATIONS or (len(token) == 1 and token.isalpha()) or "." in token:
            return 0
        if token.isdigit() and buf[line_start:i].strip() == token:
            return 0  # "1. Do this" at the start of a line
        following = buf[end:].lstrip()
        if not following:
            return None
        return 0 if following[0].islower() else end

    def _long_cut(self) -> int | None:
        if len(self._buf) <= self.max_chars:
            return None
        window = self._buf[: self.max_chars]
        found = [window.rfind(mark) for mark in SOFT_CUTS]
        cut = max((at + 1 for at in found if at >= 0), default=-1)
        if cut < self.max_chars // 3:
            cut = window.rfind(" ")
        return cut if cut > 0 else self.max_chars
