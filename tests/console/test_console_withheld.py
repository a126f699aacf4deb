"""A format 1 aggregate leaf (stored before selective disclosure: CO2 in clear) in the console, in Chromium:
the platform the enterprise is bound to sees the leaf listed but withheld in Trace, with the reason, and the
emissions view leaves it out of the total and says so; the regulator's total holds it. Its own cloud (the
shared console cloud holds only committed leaves), under uvicorn, with real signed batches on the embedded
chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.cloud.cloud_testkit import format1_batch, format1_ingest_gate
from tests.console.console_cloud import ConsoleCloud, console_cloud
from tests.console.console_pages import login, open_view

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def legacy_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConsoleCloud, str]]:
    with console_cloud(tmp_path_factory.mktemp("console-legacy")) as cloud:
        acme = cloud.tenants["acme"]
        batch, _ = format1_batch(acme.gateway, co2=31337)
        with format1_ingest_gate():
            r = cloud.http.post("/api/v1/batches", content=batch.encode(),
                                headers={"Content-Type": "application/cbor",
                                         "Authorization": f"Bearer {acme.gateway.api_key}"})
        assert r.status_code == 201, r.text
        cloud.anchor()
        yield cloud, f"{acme.gateway.gateway_id}/{batch.header['batch_seq']}"


def test_the_platform_sees_the_format_1_leaf_withheld_in_trace_with_the_reason(
    page: Page, legacy_cloud: tuple[ConsoleCloud, str]
) -> None:
    cloud, legacy_batch = legacy_cloud
    login(page, cloud, cloud.platform_key, "#/records?types=emissions")
    expect(page.locator("#forbidden")).to_be_visible()  # a platform reaches only an enterprise it names
    acme = cloud.tenants["acme"].enterprise_id
    open_view(page, f"#/records?types=emissions&enterprise={acme}")
    expect(page.locator("#records-filter select[name=enterprise]")).to_have_value(acme)
    page.locator(f"tr.record[data-batch='{legacy_batch}'] a.trace-link").first.click()
    expect(page.locator("#withheld")).to_contain_text("Withheld from this key")
    expect(page.locator("#withheld")).to_contain_text("co2")
    expect(page.locator("#evidence")).to_have_count(0)  # nothing of the leaf is read back, so no chain to show
    assert "31337" not in page.content()


def test_the_emissions_total_leaves_out_what_the_key_cannot_verify_and_says_so(
    page: Page, legacy_cloud: tuple[ConsoleCloud, str]
) -> None:
    cloud, _ = legacy_cloud
    acme = cloud.tenants["acme"].enterprise_id
    regulator = cloud.http.get("/api/v1/console/emissions", params={"enterprise_id": acme},
                               headers={"Authorization": f"Bearer {cloud.regulator_key}"}).json()
    platform = cloud.http.get("/api/v1/console/emissions", params={"enterprise_id": acme},
                              headers={"Authorization": f"Bearer {cloud.platform_key}"}).json()
    assert (regulator["withheld"], platform["withheld"]) == (0, 2)
    assert platform["total"]["g_e4"] < regulator["total"]["g_e4"]

    login(page, cloud, cloud.platform_key, f"#/emissions?enterprise={acme}")
    expect(page.locator("#emissions-withheld")).to_contain_text("2 aggregate leaves withheld from this key")
    expect(page.locator("#emissions-total")).to_contain_text(platform["total"]["t_co2"])
    page.click("#logout")
    login(page, cloud, cloud.regulator_key, f"#/emissions?enterprise={acme}")
    expect(page.locator("#emissions-total")).to_contain_text(regulator["total"]["t_co2"])
    expect(page.locator("#emissions-withheld")).to_have_count(0)
