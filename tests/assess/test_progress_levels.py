"""Focus progression as pure functions."""

from __future__ import annotations

import pytest

from assess.progress import band, ema, level


def test_ema_seeds_with_first_and_weights_recent() -> None:
    assert ema([]) is None
    assert ema([5]) == 5.0
    assert ema([4, 10]) == pytest.approx(0.3 * 10 + 0.7 * 4)
    assert ema([2, 2, 2, 9]) == pytest.approx(4.1)


@pytest.mark.parametrize(
    ("value", "lvl", "name"),
    [
        (1.0, 1, "novice"),
        (3.99, 3, "novice"),
        (4.0, 4, "developing"),
        (7.99, 7, "developing"),
        (8.0, 8, "mastery"),
        (10.0, 10, "mastery"),
        (0.2, 1, "novice"),
    ],
)
def test_levels_and_bands(value: float, lvl: int, name: str) -> None:
    assert level(value) == lvl
    assert band(level(value)) == name


def test_climbing_learner_reaches_mastery() -> None:
    scores = [3] * 5 + [9] * 10
    value = ema(scores)
    assert value is not None and band(level(value)) == "mastery"
    assert band(level(ema(scores[:7]) or 0)) == "developing"
