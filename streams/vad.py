"""Turn detection from voice-activity scores: where speech starts and where it has ended.

Pure and synchronous: it sees one probability per 32 ms window and says "started" or "stopped";
the model that scores the audio lives in `providers.vad`.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["Edge", "SpeechGate"]

Edge = Literal["started", "stopped"]


class SpeechGate:
    """Speech starts after `start_ms` of windows at or above `threshold`, and stops after
    `silence_ms` of windows below `threshold - 0.15` (the hysteresis Silero's own segmentation
    uses, so a word's soft ending does not count as silence)."""

    def __init__(
        self,
        threshold: float,
        silence_ms: int,
        *,
        window_ms: float = 32.0,
        start_ms: float = 96.0,
    ) -> None:
        self.threshold = threshold
        self.low = max(threshold - 0.15, 0.01)
        self.window_ms = window_ms
        self.start_windows = max(1, math.ceil(start_ms / window_ms))
        self.end_windows = max(1, math.ceil(silence_ms / window_ms))
        self.speaking = False
        self._run = 0  # windows in a row that point to the other state

    def step(self, probability: float) -> Edge | None:
        """Take one window's score; the edge it completes, if any."""
        if not self.speaking:
            self._run = self._run + 1 if probability >= self.threshold else 0
            if self._run >= self.start_windows:
                self.speaking, self._run = True, 0
                return "started"
            return None
        self._run = self._run + 1 if probability < self.low else 0
        if self._run >= self.end_windows:
            self.speaking, self._run = False, 0
            return "stopped"
        return None

    def reset(self) -> None:
        """Back to silence, as if speech had never started."""
        self.speaking, self._run = False, 0

    @property
    def run_windows(self) -> int:
        """Windows in a row so far toward the next edge (speech before a start, silence
        before a stop)."""
        return self._run

    @property
    def silent_ms(self) -> float:
        """How long the current speech has been silent (0 when not speaking)."""
        return self._run * self.window_ms if self.speaking else 0.0
