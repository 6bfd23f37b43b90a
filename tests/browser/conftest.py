"""Headless Chromium (the Debian package, not Playwright's download) against a real gateway."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.server import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

CHROMIUM = Path(os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium"))
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
# The README shows these pages' screenshots; a run refreshes them only when asked, so that the
# test suite leaves the checkout as it found it.
# Test knobs stay out of the COACH_ namespace: every COACH_ variable must be a setting.
REFRESH_SCREENSHOTS = "TEST_REFRESH_SCREENSHOTS"
RESULTS = Path(__file__).resolve().parents[2] / "loadtests" / "results"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = f"{CHROMIUM} is absent (apt-get install -y chromium)"
    for item in items:
        if "tests/browser" in str(item.path):
            item.add_marker(pytest.mark.slow)  # a real Chromium per test
            if not CHROMIUM.exists():
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
async def browser(playwright: Any) -> AsyncIterator[Any]:
    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=BASE_ARGS)
    yield browser
    await browser.close()


@pytest.fixture
def launch(playwright: Any) -> Callable[[list[str]], Any]:
    """A browser with extra flags (the fake microphone file); the caller closes it."""

    async def _launch(extra: list[str]) -> Any:
        return await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*BASE_ARGS, *extra]
        )

    return _launch


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pages' screenshots go: loadtests/results/ with TEST_REFRESH_SCREENSHOTS=1,
    a temporary directory otherwise."""
    if os.environ.get(REFRESH_SCREENSHOTS) == "1":
        return RESULTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
async def site(fast_sim: Any, tmp_path: Path, database_dsn: str) -> AsyncIterator[RunningGateway]:
    """The whole gateway (Postgres and assessments included) whose origin allow-list admits
    its own (ephemeral) origin."""
    settings = make_settings(
        fast_sim.url, tmp_path, allowed_origins=["*"], persistence=True, database_url=database_dsn
    )
    async with running_gateway(settings) as running:
        yield running


class PageErrors:
    """Script errors and CSP violations seen by a page (failed fetches are expected: 404s)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        return page

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.messages.append(f"console: {msg.text}")


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()
