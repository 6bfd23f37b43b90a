"""The chat page's hands-free mode in headless Chromium: the fake microphone speaks, the page
streams pcm16 with `server_vad`, the gateway hears the end of speech without a click, and the
coach answers aloud. Screenshot: handsfree.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from gateway.server import RunningGateway
from tests.browser.conftest import DESKTOP, PageErrors
from tests.browser.test_e2e import open_chat, speech_wav

pytestmark = pytest.mark.slow


async def test_hands_free_answers_without_a_click(
    launch: Callable[[list[str]], Any],
    site: RunningGateway,
    fast_sim: Any,
    token: Callable[..., str],
    tmp_path: Path,
    page_errors: PageErrors,
    screenshots: Path,
) -> None:
    wav = speech_wav(tmp_path / "speech.wav", silence_after_s=2.0)
    browser = await launch([f"--use-file-for-fake-audio-capture={wav}%noloop"])
    try:
        page = page_errors.watch(await open_chat(browser, site, token("hands"), viewport=DESKTOP))
        await page.click("#handsfree-button")
        button = page.locator("#handsfree-button")
        await expect(button).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#voice-toggle")).to_be_checked()
        heard = page.locator("li.msg.user.transcript").last
        await expect(heard).to_contain_text("pitch", timeout=30_000)
        coach = page.locator("li.msg.coach").last
        await expect(coach).to_have_attribute("data-state", "done", timeout=30_000)
        await page.wait_for_function(
            "Number(document.body.dataset.audioChunks || 0) > 0", timeout=30_000
        )
        await page.mouse.move(0, 0)  # no hover on the button in the picture
        await page.screenshot(path=str(screenshots / "handsfree.png"))
        # Still listening after the answer: no click was needed, none is needed for the next.
        await expect(button).to_have_attribute("aria-pressed", "true")
        await page.wait_for_function(
            "['listening', 'speaking'].includes(document.body.dataset.handsFree)", timeout=30_000
        )
        await button.click()
        await expect(button).to_have_attribute("aria-pressed", "false")
        await expect(page.locator("body")).to_have_attribute("data-hands-free", "off")
    finally:
        await browser.close()
    assert page_errors.messages == []
