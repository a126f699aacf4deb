"""Page helpers shared by the console's browser tests."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.console_cloud import ConsoleCloud

# The evidence chain's stages as the trace view shows them, in order (cloud/console/js/trace.js STAGES).
STAGES = ["record", "device", "batch", "gateway", "log", "checkpoint", "chain"]


def login(page: Page, cloud: ConsoleCloud, key: str, route: str = "") -> None:
    page.goto(f"{cloud.url}/console/{route}")
    page.fill("#api-key", key)
    page.click("#login button[type=submit]")
    expect(page.locator("#logout")).to_be_visible()


def open_view(page: Page, route: str) -> None:
    # Forget the view on screen first, so the wait below is for the new one, not a stale copy of it.
    page.evaluate("route => { document.getElementById('main').dataset.view = ''; location.hash = route }", route)
    name = route.lstrip("#/").split("?")[0]
    expect(page.locator(f"main[data-view={name}][aria-busy=false]")).to_be_attached()


def stage_states(page: Page) -> dict[str, str]:
    stages = page.locator("#evidence li.stage")
    return {
        stages.nth(i).get_attribute("data-stage") or "": stages.nth(i).get_attribute("data-state") or ""
        for i in range(stages.count())
    }
