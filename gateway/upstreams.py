"""Builds the router from settings: providers, routes, breakers, retries, deadlines, prices,
daily budgets and the addresses readiness checks (settings are converted to the plain configs
`providers` takes)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass

from opentelemetry.trace import TracerProvider

from gateway.settings import (
    BreakerSettings,
    DeadlineSettings,
    ProviderConfig,
    RetrySettings,
    Settings,
)
from gateway.settings import Price as PriceSettings
from providers.chat import ChatProvider
from providers.factory import build_chat_provider
from providers.native_chat import ANTHROPIC, OPENAI
from providers.resilience import (
    BreakerConfig,
    BudgetStore,
    Clock,
    DailyBudget,
    DeadlineConfig,
    Price,
    PriceTable,
    Reachability,
    RetryConfig,
)
from providers.resilience.reach import Address
from providers.routing import Router, Target

__all__ = [
    "breaker_config",
    "build_router",
    "deadline_config",
    "parse_routes",
    "retry_config",
    "upstream_address",
]


def build_router(
    settings: Settings,
    *,
    budget_store: BudgetStore | None = None,
    tracer_provider: TracerProvider | None = None,
    clock: Clock = time.monotonic,
) -> Router:
    """The router for `settings` (with the default upstreams when none are configured).

    `budget_store` persists the daily spend (in memory only without it); `tracer_provider`
    defaults to the global one; `clock` times the breakers (a test may fake it).

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
        clock=clock,
        tracer_provider=tracer_provider,
        reachability=Reachability(
            {
                name: upstream_address(config, settings.sim_url)
                for name, config in settings.providers.items()
            }
        ),
    )


def upstream_address(config: ProviderConfig, sim_url: str) -> Address:
    """Where a provider's requests first connect: the host and port of its base URL, or of the
    proxy the environment names for it (both clients read `HTTP(S)_PROXY`/`NO_PROXY` so)."""
    url = config.base_url
    if not url:
        default = ANTHROPIC if config.kind == "anthropic" else OPENAI
        url = sim_url if config.kind == "sim" else default.default_base_url
    parts = urlsplit(url)
    host = parts.hostname or ""
    proxies = getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return proxied.hostname or "", proxied.port or 80
    return host, parts.port or (443 if parts.scheme == "https" else 80)


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
        auth_cooldown_s=settings.auth_cooldown_s,
    )


def retry_config(settings: RetrySettings) -> RetryConfig:
    return RetryConfig(
        attempts_per_target=settings.attempts_per_target,
        base_delay_s=settings.base_delay_ms / 1000,
        max_delay_s=settings.max_delay_ms / 1000,
    )


def deadline_config(settings: DeadlineSettings) -> DeadlineConfig:
    return DeadlineConfig(
        first_token_s=settings.first_token_s, stall_s=settings.stall_s, answer_s=settings.answer_s
    )


def price_table(prices: dict[str, PriceSettings]) -> PriceTable:
    """The default prices, overridden or extended by the configured ones."""
    return PriceTable(
        {
            model: Price(price.input_per_mtok, price.output_per_mtok)
            for model, price in prices.items()
        }
    )
