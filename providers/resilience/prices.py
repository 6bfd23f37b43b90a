"""Token prices per model, and the cost of a call's usage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from providers.chat import Usage

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable"]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


# List prices (USD per million tokens) of common models; settings override or extend them.
DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "claude-3-haiku": Price(0.25, 1.25),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-3-opus": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
}


class PriceTable:
    """Looks a model up exactly, else by the longest known prefix (dated or `-latest` names)."""

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(prices or {})}

    def price(self, model: str) -> Price | None:
        if model in self._prices:
            return self._prices[model]
        known = [name for name in self._prices if model.startswith(name)]
        return self._prices[max(known, key=len)] if known else None

    def cost(self, usage: Usage, *models: str | None) -> float:
        """USD for `usage` at the price of the first of `models` that is known (0 if none)."""
        for model in models:
            price = self.price(model) if model else None
            if price is not None:
                return (
                    usage.input_tokens * price.input_per_mtok
                    + usage.output_tokens * price.output_per_mtok
                ) / 1_000_000
        return 0.0
