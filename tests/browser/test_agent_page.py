"""The agent on the chat page in headless Chromium: the tool the coach used shows as a compact
line in its reply, a proposed change as a card whose Accept writes it (and ticks the new
focuses), and a pending change made earlier is listed again after a reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from gateway.server import RunningGateway
from tests.browser.conftest import DESKTOP, PageErrors
from tests.browser.test_e2e import ask, open_chat, rest


async def test_tool_lines_and_a_change_card(
    browser: Any,
    site: RunningGateway,
    fast_sim: Any,
    token: Callable[..., str],
    page_errors: PageErrors,
    screenshots: Path,
) -> None:
    jwt = token("agent-page-user")
    page = page_errors.watch(await open_chat(browser, site, jwt, viewport=DESKTOP))

    reply = await ask(page, "How is my progress this week?")
    await expect(reply).to_have_attribute("data-state", "done", timeout=20_000)
    line = reply.locator(".tool-line")
    await expect(line).to_have_count(1)
    await expect(line).to_have_attribute("data-state", "done")
    await expect(line).to_contain_text("✓")

    reply = await ask(page, "Please change my focus to breathing and pacing.")
    await expect(reply).to_have_attribute("data-state", "done", timeout=20_000)
    card = page.locator("li.msg.change").last
    await expect(card).to_contain_text("Work on: Breathing, Pacing")
    progress = (await rest(site, jwt, "/v1/progress")).json()["data"]
    assert not [row for row in progress if row["active"]]  # nothing written before Accept
    await page.screenshot(path=str(screenshots / "agent.png"))
    await card.get_by_role("button", name="Accept").click()
    await expect(card).to_have_attribute("data-status", "applied", timeout=10_000)
    await expect(card.locator(".change-status")).to_have_text("Accepted")
    await expect(page.locator("#focus-breathing")).to_be_checked(timeout=10_000)
    await expect(page.locator("#focus-pacing")).to_be_checked()
    active = [
        r["focus_id"] for r in (await rest(site, jwt, "/v1/progress")).json()["data"] if r["active"]
    ]
    assert active == ["breathing", "pacing"]

    # A proposal left pending is shown again after a reload, and can still be answered.
    reply = await ask(page, "Remember that I practise in the mornings.")
    await expect(reply).to_have_attribute("data-state", "done", timeout=20_000)
    await page.reload()
    pending = page.locator("li.msg.change[data-status='pending']")
    await expect(pending).to_have_count(1, timeout=10_000)
    await expect(pending).to_contain_text("Remember:")
    await pending.get_by_role("button", name="Reject").click()
    await expect(page.locator("li.msg.change").last).to_have_attribute(
        "data-status", "rejected", timeout=10_000
    )
    assert (await rest(site, jwt, "/v1/memories")).json()["memories"] == []
    await page.context.close()
    assert page_errors.messages == []
