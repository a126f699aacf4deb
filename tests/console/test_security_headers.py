"""Issue 13, item 5: the console and the API send CSP, X-Frame-Options, nosniff and Referrer-Policy, and the
console still works under its strict CSP in a real browser (no violation reported while it is used)."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.console.console_cloud import ConsoleCloud
from tests.console.console_pages import login, open_view

COMMON = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


def _common(response: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers.get(name))
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_console_pages_carry_a_strict_csp(cloud: ConsoleCloud) -> None:
    for path in ("/console/", "/console/index.html"):
        response = httpx.get(cloud.url + path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        _common(response)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    for path in ("/console/js/main.js", "/console/console.css"):
        _common(httpx.get(cloud.url + path))
    # A revalidated page (304, no content type) keeps the console's policy: the browser applies it on reload.
    first = httpx.get(cloud.url + "/console/")
    again = httpx.get(cloud.url + "/console/", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.headers["content-security-policy"] == first.headers["content-security-policy"]


def test_api_responses_and_errors_carry_the_headers(cloud: ConsoleCloud) -> None:
    ok = httpx.get(f"{cloud.url}/api/v1/log/checkpoints")
    assert ok.status_code == 200
    _common(ok)
    assert ok.headers["content-security-policy"].startswith("default-src 'none'")
    _common(httpx.get(f"{cloud.url}/api/v1/console/batches"))  # 401
    _common(httpx.post(f"{cloud.url}/rpc", content=b"[" * 1000, headers={"Content-Type": "application/json"}))
    _common(httpx.get(f"{cloud.url}/", follow_redirects=False))  # the redirect to the console


def test_console_views_raise_no_csp_violation(page: Page, cloud: ConsoleCloud) -> None:
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    acme = cloud.tenants["acme"]
    login(page, cloud, acme.enterprise_key, "#/emissions")
    expect(page.locator("#emissions-total")).to_be_visible()
    expect(page.locator("ul.legend .swatch").first).to_have_css("background-color", _not_transparent())
    for route in ("#/enterprises", "#/sites", "#/records", "#/anchors", "#/emissions"):
        open_view(page, route)
    assert violations == []


def _not_transparent() -> re.Pattern[str]:
    """A colour set by the page's script; a blocked style attribute leaves rgba(0, 0, 0, 0)."""
    return re.compile(r"^rgb\((?!0, 0, 0\)).*")
