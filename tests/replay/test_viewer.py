"""The web session viewer in a real headless Chromium (Debian's, driven by Playwright): a
recorded session's page plays audio as long as the session, a click on a transcript line moves
the playhead there, and the lanes hold exactly what the log holds."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from services.replay.viewer.server import serving_viewer
from services.store.event_store import EventStore
from tests.conftest import MakeKey
from tests.replay.conftest import Recorded

CHROMIUM = os.environ.get("EARPIECE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    found = os.path.exists(CHROMIUM)  # noqa: ASYNC240 (once, before the browser starts)
    assert found, f"{CHROMIUM} is missing: `make install` installs Debian's chromium"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def viewer(store: EventStore) -> AsyncIterator[str]:
    async with serving_viewer(store) as base:
        yield base


@pytest.fixture
async def analyst_key(api_key: MakeKey) -> str:
    """An analyst key of the recorded session's tenant."""
    return await api_key("replay-t", "analyst")


async def open_session(browser: Browser, url: str) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await page.wait_for_selector("body[data-analysis='ready']", timeout=20_000)
    await page.wait_for_function(
        "(a => a.readyState >= 1 && isFinite(a.duration))(document.getElementById('audio'))",
        timeout=20_000,
    )
    assert errors == []
    return page


async def test_session_page_audio_transcript_and_lanes(
    browser: Browser, viewer: str, recorded: Recorded, analyst_key: str
) -> None:
    page = await open_session(browser, f"{viewer}/session/{recorded.session_id}#key={analyst_key}")
    events = recorded.events
    span_ms = (events[-1].receive_time - events[0].receive_time).total_seconds() * 1000

    duration = await page.evaluate("document.getElementById('audio').duration")
    assert abs(duration * 1000 - span_ms) < 150, (duration, span_ms)

    lines = page.locator("#transcript li")
    assert await lines.count() >= 3
    assistant = page.locator("#transcript li.assistant").first
    at_ms = int(await assistant.get_attribute("data-at-ms") or "0")
    assert at_ms > 0
    await assistant.click()
    await page.wait_for_function(
        f"Math.abs(Number(document.getElementById('playhead').dataset.ms) - {at_ms}) < 60"
    )
    current = await page.evaluate("document.getElementById('audio').currentTime")
    assert abs(current * 1000 - at_ms) < 60
    assert "current" in (await assistant.get_attribute("class") or "")
    # The playhead sits where that moment is on the lanes.
    head = await page.locator("#playhead").bounding_box()
    box = await page.locator("#lane-user").bounding_box()
    assert head is not None and box is not None
    expected_x = box["x"] + box["width"] * at_ms / (duration * 1000)
    assert abs(head["x"] - expected_x) < 4

    def count(kind: str) -> int:
        return sum(1 for e in events if e.kind == kind)

    async def lane(name: str) -> int:
        return await page.locator(f"#lane-{name} .lane-item").count()

    assert await lane("user") == count("model.server.input_audio_buffer.speech_stopped")
    assert await lane("held") == count("decision.tool_held")
    assert await lane("running") == count("decision.tool_output")
    assert await lane("context") == count("decision.context_injected")
    assert await lane("barge") == count("decision.truncated") + count("decision.item_deleted")
    voiced = {
        e.payload["response_id"]
        for e in events
        if e.kind == "model.server.response.output_audio.delta"
    }
    assert await lane("assistant") == len(voiced)
    assert await lane("barge") == 1
    await page.close()


async def test_sessions_list_searches(
    browser: Browser, viewer: str, recorded: Recorded, analyst_key: str
) -> None:
    page = await browser.new_page()
    await page.goto(f"{viewer}/?tool=highlight_element&text=fractions#key={analyst_key}")
    row = page.locator(f"tr[data-session='{recorded.session_id}']")
    await row.wait_for(timeout=20_000)
    await page.fill("input[name=text]", "photosynthesis")
    await page.click("button[type=submit]")
    await row.wait_for(state="detached", timeout=20_000)
    await page.close()


async def test_viewer_api_needs_an_analyst_key(
    viewer: str, recorded: Recorded, api_key: MakeKey
) -> None:
    import aiohttp

    url = f"{viewer}/api/sessions/{recorded.session_id}/analysis"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 401
        client_key = await api_key("replay-t", "client")
        async with http.get(url, headers={"Authorization": f"Bearer {client_key}"}) as response:
            assert response.status == 403
        other = await api_key("other-t", "analyst")
        async with http.get(url, headers={"Authorization": f"Bearer {other}"}) as response:
            assert response.status == 404
        mine = await api_key("replay-t", "analyst")
        async with http.get(url, headers={"Authorization": f"Bearer {mine}"}) as response:
            assert response.status == 200
            assert (await response.json())["session_id"] == recorded.session_id
