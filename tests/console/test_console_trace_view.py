"""The console's trace view in Chromium: every step green, the bundle download, pending anchors, tampered
records failing at the right step, and tenants that never see each other's ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from carbontrace_protocol.proof_bundle import BUNDLE_FORMAT
from carbontrace_protocol.proof_verify import verify_bundle_json
from cloud import models
from cloud.trace import RegistryReader, trust_of
from tests.console.console_cloud import ConsoleCloud, tamper_blob, tamper_reading_row
from tests.console.console_pages import STAGES, login, open_view, stage_states

pytestmark = pytest.mark.timeout(120)


def test_trace_shows_every_step_green_and_the_bundle_verifies_offline(
    page: Page, cloud: ConsoleCloud, tmp_path: Path
) -> None:
    acme = cloud.tenants["acme"]
    login(page, cloud, acme.enterprise_key, "#/records?types=co2")
    page.locator(f"tr.record[data-batch='{acme.gateway.gateway_id}/0'] a.trace-link").first.click()
    expect(page.locator("#evidence")).to_be_visible()
    expect(page.locator(".trace-status .badge")).to_have_text("valid")
    assert stage_states(page) == dict.fromkeys(STAGES, "ok")
    expect(page.locator("li.stage[data-stage=chain]")).to_contain_text("tx 0x")
    expect(page.locator("table.kv")).to_contain_text("co2_ppm")

    with page.expect_download() as download_info:
        page.click("#download-bundle")
    path = tmp_path / "bundle.json"
    download_info.value.save_as(path)
    bundle = json.loads(path.read_text())
    assert bundle["format"] == BUNDLE_FORMAT and len(bundle["items"]) == 1
    report = verify_bundle_json(bundle, RegistryReader(cloud.ledger.chain.registry()), trust_of(cloud.ledger))
    assert report.status == "valid", report

    # An aggregate window: the device stage does not apply (the gateway signs aggregates).
    open_view(page, "#/records?types=aggregates")
    page.locator(f"tr.record[data-batch='{acme.gateway.gateway_id}/0'] a.trace-link").first.click()
    expect(page.locator(".trace-status .badge")).to_have_text("valid")
    assert stage_states(page) == {**dict.fromkeys(STAGES, "ok"), "device": "n/a"}


def test_a_batch_not_anchored_yet_is_pending_after_the_gateway(page: Page, cloud: ConsoleCloud) -> None:
    globex = cloud.tenants["globex"]
    receipt = cloud.upload(globex.gateway)
    login(page, cloud, globex.enterprise_key, "#/records?types=energy")
    page.locator(f"tr.record[data-batch='{receipt['batch_id']}'] a.trace-link").first.click()
    expect(page.locator(".trace-status .badge")).to_have_text("pending")
    states = stage_states(page)
    assert [states[s] for s in STAGES] == ["ok", "ok", "ok", "ok", "pending", "pending", "pending"]


def test_a_tampered_reading_row_fails_at_the_stored_record(page: Page, cloud: ConsoleCloud) -> None:
    acme = cloud.tenants["acme"]
    batch_id = f"{acme.gateway.gateway_id}/1"
    tamper_reading_row(cloud.ledger, batch_id, 0)
    login(page, cloud, acme.enterprise_key, "#/records?types=co2")
    page.locator(f"tr.record[data-batch='{batch_id}'][data-leaf='0'] a.trace-link").click()
    expect(page.locator(".trace-status .badge")).to_have_text("invalid")
    expect(page.locator("#failed-step")).to_contain_text("sql_index")
    states = stage_states(page)
    assert states["record"] == "failed"
    assert all(states[s] == "unchecked" for s in STAGES[1:])
    expect(page.locator("li[data-step=sql_index]")).to_contain_text("differs from the signed leaf")
    # the neighbouring reading of the same batch is untouched and still verifies
    open_view(page, "#/records?types=co2")
    page.locator(f"tr.record[data-batch='{batch_id}'][data-leaf='1'] a.trace-link").click()
    expect(page.locator(".trace-status .badge")).to_have_text("valid")


def test_a_tampered_blob_fails_at_the_content_store(page: Page, cloud: ConsoleCloud) -> None:
    acme = cloud.tenants["acme"]
    batch_id = f"{acme.gateway.gateway_id}/2"
    with cloud.ledger.read_session_factory() as session:
        batch = session.get(models.Batch, batch_id)
        assert batch is not None
        cid = batch.cid
    tamper_blob(cloud.ledger, cid)
    login(page, cloud, cloud.regulator_key, "#/records?types=humidity")
    page.locator(f"tr.record[data-batch='{batch_id}'] a.trace-link").first.click()
    expect(page.locator(".trace-status .badge")).to_have_text("invalid")
    expect(page.locator("#failed-step")).to_contain_text("content_store")
    assert stage_states(page)["record"] == "failed"
    expect(page.locator("li[data-step=content_store]")).to_contain_text(cid)


def _tenant_ids(cloud: ConsoleCloud, name: str) -> list[str]:
    tenant = cloud.tenants[name]
    gw = tenant.gateway
    return [tenant.enterprise_id, gw.site_id, gw.gateway_id, *(d.device_id for d in gw.devices)]


def _page_text(page: Page) -> str:
    return page.content() + page.inner_text("body")


def test_an_enterprise_never_sees_another_tenants_ids(page: Page, cloud: ConsoleCloud) -> None:
    globex = cloud.tenants["globex"]
    acme_ids = _tenant_ids(cloud, "acme")
    login(page, cloud, globex.enterprise_key)
    seen: list[str] = []
    for route in ("#/enterprises", "#/sites", "#/emissions", "#/anchors",
                  "#/records?types=co2,temperature,humidity,energy,emissions,aggregates"):
        open_view(page, route)
        text = _page_text(page)
        seen += [i for i in acme_ids if i in text]
        assert "Acme" not in text
        assert globex.gateway.site_id in text or route in ("#/enterprises", "#/anchors")
    assert seen == []
    # A hand-made link to the other tenant's device finds nothing and names nothing.
    acme_device = cloud.tenants["acme"].gateway.devices[0].device_id
    open_view(page, f"#/trace?device={acme_device}&start=1700000000&end=1700000001&types=co2")
    expect(page.locator("#view-trace")).to_contain_text("Nothing found")
    assert not [i for i in acme_ids if i in _page_text(page)]


def test_a_platform_sees_only_its_bound_enterprise_and_no_sites(page: Page, cloud: ConsoleCloud) -> None:
    acme, globex_ids = cloud.tenants["acme"], _tenant_ids(cloud, "globex")
    login(page, cloud, cloud.platform_key, "#/enterprises")
    expect(page.locator(f"tr[data-enterprise={acme.enterprise_id}]")).to_be_visible()
    open_view(page, "#/emissions")
    expect(page.locator("svg.chart circle.point").first).to_be_attached()
    open_view(page, "#/sites")
    expect(page.locator("#forbidden")).to_be_visible()  # the API refused; the page just says so
    open_view(page, "#/records?types=emissions")
    assert not [i for i in globex_ids if i in _page_text(page)]
