"""The trace console in a real browser (Debian's Chromium via Playwright) against a real, populated cloud:
login, the list views, filters, the emissions chart and live updates."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from cloud import models
from tests.cloud.cloud_testkit import auth
from tests.console.console_cloud import ConsoleCloud
from tests.console.console_pages import login

pytestmark = pytest.mark.timeout(120)


def test_login_rejects_an_unknown_key_and_keeps_a_good_one_for_the_tab(page: Page, cloud: ConsoleCloud) -> None:
    page.goto(f"{cloud.url}/")  # the cloud's root redirects to the console
    expect(page).to_have_url(re.compile(r"/console/$"))
    page.fill("#api-key", "ct_" + "0" * 64)
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    assert page.evaluate("sessionStorage.length") == 0

    acme = cloud.tenants["acme"]
    login(page, cloud, acme.enterprise_key)
    expect(page.locator("#who .badge")).to_have_text("enterprise")
    expect(page.locator("#scope")).to_contain_text(acme.enterprise_id)
    page.reload()  # the key survives a reload of the tab (sessionStorage) ...
    expect(page.locator("#scope")).to_contain_text(acme.enterprise_id)
    page.click("#logout")  # ... and is gone after logging out
    expect(page.locator("#api-key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_enterprises_and_bindings_as_the_chain_holds_them(page: Page, cloud: ConsoleCloud) -> None:
    acme, globex = cloud.tenants["acme"], cloud.tenants["globex"]
    login(page, cloud, cloud.regulator_key, "#/enterprises")
    acme_row = page.locator(f"tr[data-enterprise={acme.enterprise_id}]")
    expect(acme_row).to_contain_text("GreenX Exchange")
    expect(acme_row.locator(".badge")).to_have_text("bound")
    expect(page.locator(f"tr[data-enterprise={globex.enterprise_id}]")).to_contain_text("none")


def test_sites_show_device_status_sequence_gaps_and_gateway_rejections(page: Page, cloud: ConsoleCloud) -> None:
    acme = cloud.tenants["acme"]
    device = acme.gateway.devices[0]
    # The gateway reports what it counted (the real endpoint, with the gateway's own key).
    report = {"devices": [{"device": device.device_id, "rejections": {"bad_signature": 2, "replay": 1}, "gaps": []},
                          {"device": "_unregistered", "rejections": {"unknown_device": 4}}]}
    r = cloud.http.post(f"/api/v1/gateways/{acme.gateway.gateway_id}/health", json=report,
                        headers=auth(acme.gateway.api_key))
    assert r.status_code == 200, r.text
    # What the stored readings say, read straight from the DB (independent of the console's SQL).
    with cloud.ledger.read_session_factory() as session:
        seqs = session.scalars(select(models.Reading.seq).where(models.Reading.device_id == device.device_id)).all()
    holes = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs))
    assert holes, "the populated data has a sequence gap"

    login(page, cloud, acme.engineer_key, "#/sites")
    row = page.locator(f"tr[data-device={device.device_id}]")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text(f"{holes[0]}–{holes[-1]} ({len(holes)} missing)")
    expect(row.locator("td[data-rejected]")).to_have_attribute("data-rejected", "3")
    expect(row).to_contain_text("bad_signature 2")
    gateway_row = page.locator(f"tr[data-gateway={acme.gateway.gateway_id}]")
    expect(gateway_row.locator("td").last).to_have_text("4")
    # a gateway may only report for itself
    other = cloud.tenants["globex"].gateway
    r = cloud.http.post(f"/api/v1/gateways/{other.gateway_id}/health", json=report, headers=auth(acme.gateway.api_key))
    assert r.status_code == 403


def test_records_filter_by_type_and_period(page: Page, cloud: ConsoleCloud) -> None:
    acme = cloud.tenants["acme"]
    devices = len(acme.gateway.devices)
    login(page, cloud, acme.enterprise_key, "#/records")
    # The first window only: 2023-11-14 22:13–22:14 UTC holds the first batch's readings (3 per device).
    page.check("#records-filter input[value=co2]")
    page.fill("#records-filter input[name=from]", "2023-11-14T22:13")
    page.fill("#records-filter input[name=to]", "2023-11-14T22:14")
    page.click("#records-filter button[type=submit]")
    expect(page.locator("#records-count")).to_have_text(f"{3 * devices} records")
    rows = page.locator("tr.record")
    assert rows.count() == 3 * devices
    assert {rows.nth(i).get_attribute("data-kind") for i in range(rows.count())} == {"reading"}
    assert {rows.nth(i).get_attribute("data-batch") for i in range(rows.count())} == {f"{acme.gateway.gateway_id}/0"}

    page.uncheck("#records-filter input[value=co2]")
    page.check("#records-filter input[value=emissions]")
    page.click("#records-filter button[type=submit]")
    expect(page.locator("#records-count")).to_have_text(f"{devices} records")
    assert {rows.nth(i).get_attribute("data-kind") for i in range(rows.count())} == {"aggregate"}

    page.fill("#records-filter input[name=from]", "")
    page.fill("#records-filter input[name=to]", "")
    page.click("#records-filter button[type=submit]")
    with cloud.ledger.read_session_factory() as session:
        windows = session.scalar(
            select(func.count())
            .select_from(models.Aggregate)
            .join(models.Batch, models.Batch.id == models.Aggregate.batch_id)
            .where(models.Batch.site_id == acme.gateway.site_id)
        )
    expect(page.locator("#records-count")).to_have_text(f"{windows} records")


def test_emissions_chart_and_factor_with_its_source(page: Page, cloud: ConsoleCloud) -> None:
    acme = cloud.tenants["acme"]
    with cloud.ledger.read_session_factory() as session:
        rows = session.execute(
            select(models.Aggregate.window_start, models.Aggregate.emissions_g_e4)
            .join(models.Batch, models.Batch.id == models.Aggregate.batch_id)
            .where(models.Batch.site_id == acme.gateway.site_id)
        ).all()
    windows = {w for w, _ in rows}
    total = sum(g or 0 for _, g in rows)
    login(page, cloud, acme.enterprise_key, "#/emissions")
    expect(page.locator("svg.chart circle.point")).to_have_count(len(windows))
    # tCO2 as the statement reports it (1 t = 1e10 g x 1e-4), with its method
    tonnes = f"{total // 10**10}.{total % 10**10:010d}"
    expect(page.locator("#emissions-total")).to_have_text(f"{tonnes} tCO2 (location-based)")
    # beside it the market-based total, the API's exact text (cloud/routers/console_api.market_total)
    series = cloud.http.get("/api/v1/console/emissions", headers={"Authorization": f"Bearer {acme.enterprise_key}"})
    market = series.json()["market_based"]
    expect(page.locator("#emissions-market-total")).to_have_text(f"{market['t_co2']} tCO2 (market-based)")
    expect(page.locator("svg.chart circle.point title").first).to_contain_text("tCO2 (location-based)")
    factor = page.locator(f"tr[data-factor={acme.gateway.factor_id}]")
    expect(factor).to_be_visible()
    assert len(factor.locator("td").last.inner_text()) > 10  # the factor's published source is named
    # period filter: the first window only
    page.fill("#emissions-filter input[name=from]", "2023-11-14T22:13")
    page.fill("#emissions-filter input[name=to]", "2023-11-14T22:14")
    page.click("#emissions-filter button[type=submit]")
    expect(page.locator("svg.chart circle.point")).to_have_count(1)


def test_new_batches_and_anchors_appear_without_reloading(page: Page, cloud: ConsoleCloud) -> None:
    globex = cloud.tenants["globex"]
    login(page, cloud, cloud.regulator_key, "#/anchors")
    expect(page.locator("main[data-view=anchors][aria-busy=false]")).to_be_attached()
    page.evaluate("window.__sameDocument = true")
    anchored_before = page.locator("tr.checkpoint").count()
    receipt = cloud.upload(globex.gateway)
    row = page.locator(f"tr.batch[data-batch='{receipt['batch_id']}']")
    expect(row).to_contain_text("pending", timeout=15_000)
    cloud.anchor()
    expect(row).to_contain_text("checkpoint", timeout=15_000)
    expect(page.locator("tr.checkpoint")).to_have_count(anchored_before + 1)
    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
