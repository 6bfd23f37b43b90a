"""What to settle when one upstream attempt ends: its breaker call, its span, its cost."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.trace import Span

from providers.chat import Usage
from providers.errors import ProviderError
from providers.resilience.breaker import Call, CircuitBreaker
from providers.resilience.budget import DailyBudget
from providers.resilience.prices import PriceTable
from providers.resilience.telemetry import end_attempt_span

__all__ = ["AttemptWatch"]


@dataclass(slots=True)
class AttemptWatch:
    """Settles an attempt exactly once, however it ends (finished, failed or abandoned)."""

    target: str
    model: str
    breaker: CircuitBreaker
    call: Call
    span: Span
    prices: PriceTable
    budget: DailyBudget | None = None
    cost_usd: float = 0.0
    _ended: bool = field(default=False)

    def first_token(self, ttft_ms: float) -> None:
        self.span.set_attribute("gen_ai.server.time_to_first_token", ttft_ms / 1000)
        self.breaker.record_first_token(self.call, ttft_ms)

    async def end(
        self,
        *,
        completed: bool = False,
        error: BaseException | None = None,
        usage: Usage | None = None,
        finish_reason: str | None = None,
        response_model: str | None = None,
    ) -> float:
        """Record the outcome; returns the attempt's cost in USD. Later calls change nothing."""
        if self._ended:
            return self.cost_usd
        self._ended = True
        if completed:
            self.breaker.record_success(self.call)
        elif isinstance(error, ProviderError):
            self.breaker.record_failure(self.call, error)
        else:
            self.breaker.release(self.call)
        if usage is not None:
            self.cost_usd = self.prices.cost(usage, response_model, self.model)
            self.span.set_attribute("coach.cost_usd", self.cost_usd)
        end_attempt_span(
            self.span,
            usage=usage,
            finish_reason=finish_reason,
            response_model=response_model,
            error=None if completed else error,
        )
        if self.budget is not None:
            await self.budget.add(self.target, self.cost_usd)
        return self.cost_usd
