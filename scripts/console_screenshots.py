"""Screenshots of the trace console's main views, for docs/screenshots/.

Starts a real cloud (uvicorn, temp storage, embedded chain) populated with real signed batches the way the
console tests do (tests/console/console_cloud.py), and drives Debian's Chromium through Playwright (never a
downloaded browser). Usage: .venv/bin/python scripts/console_screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from tests.cloud.cloud_testkit import auth  # noqa: E402
from tests.console.console_cloud import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    ConsoleCloud,
    console_cloud,
    tamper_reading_row,
)
from tests.console.console_pages import login, open_view  # noqa: E402


def more_history(cloud: ConsoleCloud) -> None:
    """A dozen more windows per site with a varying load, so the chart has a shape; then anchor them."""
    for n in range(12):
        cloud.upload(cloud.tenants["acme"].gateway, per_device=2 + (n * 5) % 7)
        cloud.upload(cloud.tenants["globex"].gateway, per_device=1 + (n * 3) % 4)
        if n % 4 == 3:
            cloud.anchor()
    cloud.upload(cloud.tenants["acme"].gateway)  # one pending batch, as a live system has


def health_report(cloud: ConsoleCloud) -> None:
    acme = cloud.tenants["acme"].gateway
    report = {
        "devices": [
            {"device": acme.devices[0].device_id, "rejections": {"bad_signature": 2, "replay": 1}, "gaps": []},
            {"device": "_unregistered", "rejections": {"unknown_device": 4}},
        ]
    }
    r = cloud.http.post(f"/api/v1/gateways/{acme.gateway_id}/health", json=report, headers=auth(acme.api_key))
    assert r.status_code == 200, r.text


def shoot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"wrote {out / name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ct-console-shots-") as tmp, console_cloud(Path(tmp)) as cloud:
        more_history(cloud)
        health_report(cloud)
        acme = cloud.tenants["acme"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1360, "height": 860}, locale="en-GB")
            page = context.new_page()
            page.goto(f"{cloud.url}/console/")
            expect(page.locator("#api-key")).to_be_visible()
            shoot(page, out, "01-login")
            login(page, cloud, cloud.regulator_key, "#/enterprises")
            open_view(page, "#/enterprises")
            shoot(page, out, "02-enterprises")
            open_view(page, "#/emissions")
            shoot(page, out, "03-emissions")
            page.click("#logout")
            login(page, cloud, acme.engineer_key, "#/sites")
            open_view(page, "#/sites")
            shoot(page, out, "04-sites-devices")
            page.click("#logout")
            first_minutes = "#/records?types=co2,emissions&from=1700000000&to=1700000120"
            login(page, cloud, acme.enterprise_key, first_minutes)
            open_view(page, first_minutes)
            shoot(page, out, "05-records")
            page.locator(f"tr.record[data-batch='{acme.gateway.gateway_id}/0'] a.trace-link").first.click()
            expect(page.locator(".trace-status .badge")).to_have_text("valid")
            shoot(page, out, "06-trace-valid")
            tamper_reading_row(cloud.ledger, f"{acme.gateway.gateway_id}/1", 0)
            open_view(page, "#/records?types=co2")
            page.locator(f"tr.record[data-batch='{acme.gateway.gateway_id}/1'][data-leaf='0'] a.trace-link").click()
            expect(page.locator(".trace-status .badge")).to_have_text("invalid")
            shoot(page, out, "07-trace-tampered")
            open_view(page, "#/anchors")
            shoot(page, out, "08-anchors")
            browser.close()


if __name__ == "__main__":
    main()
