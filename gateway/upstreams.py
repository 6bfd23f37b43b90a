"""Builds the router from settings: providers, routes, breakers, retries, deadlines, prices and
daily budgets (settings are converted to the plain configs `providers` takes)."""

from __future__ import annotations

from opentelemetry.trace import TracerProvider

from gateway.settings import (
    BreakerSettings,
    DeadlineSettings,
    RetrySettings,
    Settings,
)
from gateway.settings import Price as PriceSettings
from providers.chat import ChatProvider
from providers.factory import build_chat_provider
from providers.resilience import (
    BreakerConfig,
    BudgetStore,
    DailyBudget,
    DeadlineConfig,
    Price,
    PriceTable,
    RetryConfig,
)
from providers.routing import Router, Target

__all__ = ["breaker_config", "build_router", "deadline_config", "parse_routes", "retry_config"]


def build_router(
    settings: Settings,
    *,
    budget_store: BudgetStore | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Router:
    """The router for `settings` (with the default upstreams when none are configured).

    `budget_store` persists the daily spend (in memory only without it); `tracer_provider`
    defaults to the global one.

    Raises ValueError when a route names a provider that is not configured.
    """
    settings = settings.with_default_upstreams()
    routes = parse_routes(settings)
    providers: dict[str, ChatProvider] = {
        name: build_chat_provider(name, config, sim_url=settings.sim_url)
        for name, config in settings.providers.items()
    }
    budgets = {
        name: config.daily_budget_usd
        for name, config in settings.providers.items()
        if config.daily_budget_usd is not None
    }
    return Router(
        providers,
        routes,
        breaker=breaker_config(settings.breaker),
        retry=retry_config(settings.retry),
        deadlines=deadline_config(settings.deadlines),
        prices=price_table(settings.prices),
        budget=DailyBudget(budgets, store=budget_store) if budgets else None,
        tracer_provider=tracer_provider,
    )


def parse_routes(settings: Settings) -> dict[str, list[Target]]:
    """Routes of `settings` as targets, checked against the configured providers."""
    routes: dict[str, list[Target]] = {}
    for route, specs in settings.routes.items():
        if not specs:
            raise ValueError(f"route {route!r} has no targets")
        targets = []
        for spec in specs:
            try:
                target = Target.parse(spec)
            except ValueError as exc:
                raise ValueError(f"route {route!r}: {exc}") from exc
            if target.provider not in settings.providers:
                known = ", ".join(sorted(settings.providers)) or "none"
                raise ValueError(
                    f"route {route!r} names provider {target.provider!r}, which is not "
                    f"configured (configured: {known})"
                )
            targets.append(target)
        routes[route] = targets
    return routes


def breaker_config(settings: BreakerSettings) -> BreakerConfig:
    return BreakerConfig(
        window_s=settings.window_s,
        min_calls=settings.min_calls,
        failure_rate=settings.failure_rate,
        slow_ttft_ms=settings.slow_ttft_ms,
        cooldown_s=settings.cooldown_s,
        max_cooldown_s=settings.max_cooldown_s,
        half_open_probes=settings.half_open_probes,
    )


def retry_config(settings: RetrySettings) -> RetryConfig:
    return RetryConfig(
        attempts_per_target=settings.attempts_per_target,
        base_delay_s=settings.base_delay_ms / 1000,
        max_delay_s=settings.max_delay_ms / 1000,
    )


def deadline_config(settings: DeadlineSettings) -> DeadlineConfig:
    return DeadlineConfig(first_token_s=settings.first_token_s, stall_s=settings.stall_s)


def price_table(prices: dict[str, PriceSettings]) -> PriceTable:
    """The default prices, overridden or extended by the configured ones."""
    return PriceTable(
        {
            model: Price(price.input_per_mtok, price.output_per_mtok)
            for model, price in prices.items()
        }
    )
