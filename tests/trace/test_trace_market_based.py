"""Market-based Scope 2 against the real test cloud: an enterprise registers contractual instruments for its own
site (every bad one refused with its reason), a statement states the market-based figure beside the
location-based one, and the offline verifier re-derives it; a figure or instrument edited by an insider who
holds the cloud key (so the statement is re-signed) fails at statement_market_based."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import p256, strict_json
from carbontrace_protocol.emission_factors import CATALOGUE_ENV
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.market_based import section_inputs
from tests.cloud.cloud_testkit import auth, register_tenant
from tests.trace.trace_kit import Traced, anchor, get, ledger_of, reader_of, trust_of, upload_batches

HEBEI = {"country": "CN", "province": "CN-HE", "grid_region": "CN-GRID-NORTH"}
RESIDUAL_2023 = ("CN-national-2023-excl-market-nonfossil", 6096)  # MEE/NBS 2023, valid from 2026-01-15
BUNDLED = Path(__file__).resolve().parents[2] / "carbontrace_protocol" / "data" / "emission_factors.json"
ISSUER = "China Green Certificate Issuance and Trading Platform"


def _record(start: int, end: int, volume_wh: int, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "gec",
        "instrument_id": f"GEC-{start}-{volume_wh}",
        "issuer": ISSUER,
        "volume_wh": volume_wh,
        "delivery": {"start": start, "end": end},
        "rate_kg_per_kwh_e4": 0,
        "evidence_sha256": hashlib.sha256(b"certificate scan").hexdigest(),
        **changes,
    }


def _post(client: TestClient, site_id: str, key: str, body: Any) -> Any:
    return client.post(f"/api/v1/sites/{site_id}/instruments", json=body, headers=auth(key))


def _period(traced: Traced) -> tuple[int, int]:
    return traced.batches[0].header["window"][0], traced.batches[-1].header["window"][1] + 600


def _statement(client: TestClient, traced: Traced) -> dict[str, Any]:
    start, end = _period(traced)
    r = get(client, f"/api/v1/enterprises/{traced.tenant.enterprise_id}/statement", traced.tenant.enterprise_key,
            start=start, end=end)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _resign(client: TestClient, document: dict[str, Any]) -> dict[str, Any]:
    """What an insider with the cloud key does after an edit: the body signed anew."""
    key = ledger_of(client).signing_key
    document["signature"]["kid"] = key_fingerprint(bytes(p256.public_key(key))).hex()
    document["signature"]["value"] = bytes(p256.sign(key, strict_json.canonical(document["statement"]))).hex()
    return document


def _verify(client: TestClient, document: dict[str, Any]) -> Any:
    from carbontrace_protocol.statement import verify_statement

    return verify_statement(document, reader_of(client), trust_of(client))


def _hebei_tenant(client: TestClient, name: str) -> Traced:
    traced = Traced(register_tenant(client, name, devices=2, location=HEBEI))
    upload_batches(client, traced, 3)
    return traced


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Traced, Traced, Traced]]:
    from tests.cloud.cloud_testkit import app_client, make_settings

    with app_client(make_settings(tmp_path_factory.mktemp("market"))) as client:
        plain = _hebei_tenant(client, "Market Plain")  # no instruments: all energy at the residual mix
        green = _hebei_tenant(client, "Market Green")  # instruments over its period
        other = _hebei_tenant(client, "Market Other")  # another tenant
        anchor(client)
        yield client, plain, green, other


# ---- registration ----------------------------------------------------------------------------------------


def test_an_enterprise_registers_an_instrument_for_its_site_and_reads_it_back(cloud: Any) -> None:
    client, _, _, other = cloud
    tenant = other.tenant
    site = tenant.gateway.site_id
    body = _record(1_600_000_000, 1_600_086_400, 5_000)
    r = _post(client, site, tenant.enterprise_key, body)
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["record"] == {**body, "site_id": site}
    assert answer["record_sha256"] == hashlib.sha256(strict_json.canonical(answer["record"])).hexdigest()
    for key in (tenant.enterprise_key, tenant.engineer_key):
        listed = client.get(f"/api/v1/sites/{site}/instruments", headers=auth(key))
        assert listed.status_code == 200 and [i["record"] for i in listed.json()] == [answer["record"]], listed.text


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"volume_wh": 0}, "instrument.volume_wh must be a JSON integer from 1"),
        ({"volume_wh": -1}, "instrument.volume_wh must be a JSON integer from 1"),
        ({"delivery": {"start": 1_600_086_400, "end": 1_600_000_000}}, "instrument.delivery must end after it starts"),
        ({"kind": "carbon_offset"}, "instrument.kind must be one of"),
        ({"rate_kg_per_kwh_e4": 5}, "of a gec must be 0"),
        ({"site_id": "elsewhere"}, "site_id is the path's"),
        ({"surprise": True}, "unknown fields ['surprise']"),
    ],
)
def test_a_bad_instrument_is_refused_with_its_reason(cloud: Any, changes: dict[str, Any], reason: str) -> None:
    client, _, _, other = cloud
    r = _post(client, other.tenant.gateway.site_id, other.tenant.enterprise_key,
              {**_record(1_500_000_000, 1_500_086_400, 10), **changes})
    assert r.status_code == 422 and reason in r.json()["detail"], r.text


def test_a_body_that_is_not_an_object_is_refused(cloud: Any) -> None:
    client, _, _, other = cloud
    r = _post(client, other.tenant.gateway.site_id, other.tenant.enterprise_key, [1, 2])
    assert r.status_code == 422 and "must be a JSON object" in r.text, r.text


def test_another_tenants_site_an_unknown_site_and_other_roles_are_refused(cloud: Any) -> None:
    client, plain, _, other = cloud
    body = _record(1_400_000_000, 1_400_086_400, 10)
    assert _post(client, plain.tenant.gateway.site_id, other.tenant.enterprise_key, body).status_code == 403
    assert _post(client, "no-such-site", other.tenant.enterprise_key, body).status_code == 403  # no probing
    assert _post(client, other.tenant.gateway.site_id, other.tenant.engineer_key, body).status_code == 403
    r = client.post(f"/api/v1/sites/{other.tenant.gateway.site_id}/instruments", json=body)
    assert r.status_code == 401
    listed = client.get(f"/api/v1/sites/{plain.tenant.gateway.site_id}/instruments",
                        headers=auth(other.tenant.enterprise_key))
    assert listed.status_code == 403
    # the operator reads every tenant's (so a missing site is a plain 404 to it) but registers for none
    from tests.cloud.cloud_testkit import ADMIN_KEY

    assert client.get("/api/v1/sites/no-such-site/instruments", headers=auth(ADMIN_KEY)).status_code == 404
    assert client.get(f"/api/v1/sites/{plain.tenant.gateway.site_id}/instruments",
                      headers=auth(ADMIN_KEY)).status_code == 200
    assert _post(client, plain.tenant.gateway.site_id, ADMIN_KEY, body).status_code == 403


def test_reusing_a_certificate_for_an_overlapping_delivery_is_double_counting(cloud: Any) -> None:
    client, plain, _, other = cloud
    first = _record(1_300_000_000, 1_300_086_400, 100, instrument_id="GEC-REUSED")
    assert _post(client, other.tenant.gateway.site_id, other.tenant.enterprise_key, first).status_code == 201
    overlap = {**first, "delivery": {"start": 1_300_080_000, "end": 1_300_200_000}, "volume_wh": 7}
    for tenant in (other.tenant, plain.tenant):  # the same site again, or another enterprise's site
        r = _post(client, tenant.gateway.site_id, tenant.enterprise_key, overlap)
        assert r.status_code == 409 and "counted twice" in r.json()["detail"], r.text
    later = {**first, "delivery": {"start": 1_300_086_400, "end": 1_300_172_800}}  # adjacent: not overlapping
    assert _post(client, other.tenant.gateway.site_id, other.tenant.enterprise_key, later).status_code == 201


# ---- statements ------------------------------------------------------------------------------------------


def test_without_instruments_the_market_based_figure_is_all_residual_mix(cloud: Any) -> None:
    client, plain, _, _ = cloud
    document = _statement(client, plain)
    body = document["statement"]
    market = body["market_based"]
    total_wh = body["figures"]["energy_wh"]
    assert market["energy_wh"] == {"total": total_wh, "instruments": 0, "residual": total_wh}
    (site,) = market["sites"]
    assert site["site_id"] == plain.tenant.gateway.site_id and site["location"] == HEBEI
    factor = site["residual_factor"]
    assert (factor["id"], factor["kg_per_kwh_e4"], factor["fallback"]) == (*RESIDUAL_2023, None)
    assert market["emissions"]["g_e4"] == total_wh * 6096
    assert market["emissions"]["method"] == "market-based" and market["emissions"]["unit"] == "tCO2"
    location = body["figures"]["attribution"]["emissions"]["total"]
    assert location["method"] == "location-based" and location["g_e4"] == total_wh * 7252  # Hebei 2022
    report = _verify(client, document)
    assert report.status == "valid", report.as_json()
    assert report.steps[-1].step == "statement_market_based" and report.steps[-1].ok


@pytest.fixture(scope="module")
def green_statement(cloud: Any) -> dict[str, Any]:
    """The green tenant's statement with a GEC covering half its measured energy and a PPA (at 0.0120
    kg/kWh) offering more than the rest: the PPA covers only what is measured and not yet covered."""
    client, _, green, _ = cloud
    start, end = _period(green)
    measured = _statement(client, green)["statement"]["figures"]["attribution"]["energy_wh"]["measured"]
    tenant = green.tenant
    gec = _record(start, end, measured // 2)
    ppa = _record(start, end, measured, kind="ppa", instrument_id="PPA-HEBEI-WIND-7", issuer="Hebei Wind Co",
                  rate_kg_per_kwh_e4=120, evidence_sha256=None)
    for body in (gec, ppa):
        r = _post(client, tenant.gateway.site_id, tenant.enterprise_key, body)
        assert r.status_code == 201, r.text
    return _statement(client, green)


def test_instruments_cover_measured_energy_and_the_verifier_re_derives_the_figure(
    cloud: Any, green_statement: dict[str, Any]
) -> None:
    client, _, _, _ = cloud
    body = green_statement["statement"]
    energy = body["figures"]["attribution"]["energy_wh"]
    measured, total = energy["measured"], energy["total"]
    (site,) = body["market_based"]["sites"]
    used = {u["record"]["instrument_id"]: u["used_wh"] for u in site["instruments"]}
    assert used == {f"GEC-{_period_of(body)[0]}-{measured // 2}": measured // 2,
                    "PPA-HEBEI-WIND-7": measured - measured // 2}
    assert site["energy_wh"] == {"total": total, "measured": measured, "instruments": measured,
                                 "residual": total - measured}
    grams = (measured - measured // 2) * 120 + (total - measured) * 6096
    assert body["market_based"]["emissions"]["g_e4"] == grams
    assert all(u["record_sha256"] == hashlib.sha256(strict_json.canonical(u["record"])).hexdigest()
               for u in site["instruments"])
    report = _verify(client, green_statement)
    assert report.status == "valid", report.as_json()
    assert "covered by 2 instrument(s)" in report.steps[-1].detail


def _period_of(body: dict[str, Any]) -> tuple[int, int]:
    return body["period"]["start"], body["period"]["end"]


def _edit_volume(market: dict[str, Any]) -> None:
    used = market["sites"][0]["instruments"][0]
    used["record"]["volume_wh"] *= 4  # a bigger certificate, its hash updated so it is self-consistent
    used["record_sha256"] = hashlib.sha256(strict_json.canonical(used["record"])).hexdigest()


def _edit_hash_only(market: dict[str, Any]) -> None:
    market["sites"][0]["instruments"][0]["record"]["rate_kg_per_kwh_e4"] = 0
    market["sites"][0]["instruments"][1]["record"]["rate_kg_per_kwh_e4"] = 0  # the PPA's rate, hash left


def _edit_figure(market: dict[str, Any]) -> None:
    market["emissions"]["g_e4"] -= 1


def _edit_location(market: dict[str, Any]) -> None:
    market["sites"][0]["location"] = {"country": "CN", "province": "CN-QH", "grid_region": "CN-GRID-NORTHWEST"}


def _drop_instrument_claim(market: dict[str, Any]) -> None:
    market["sites"][0]["instruments"][0]["used_wh"] += 1


def _instrument_of_another_period(market: dict[str, Any]) -> None:
    used = market["sites"][0]["instruments"][0]
    used["record"]["delivery"] = {"start": 1_000_000_000, "end": 1_000_086_400}
    used["record_sha256"] = hashlib.sha256(strict_json.canonical(used["record"])).hexdigest()


@pytest.mark.parametrize(
    ("edit", "detail"),
    [
        (_edit_volume, "differs from the rule's figures"),
        (_edit_hash_only, "not the sha256 of its canonical record"),
        (_edit_figure, "differs from the rule's figures"),
        (_edit_location, "not one the rule gives"),
        (_drop_instrument_claim, "differs from the rule's figures"),
        (_instrument_of_another_period, "does not overlap the period"),
    ],
)
def test_an_edited_market_based_section_fails_at_its_step(
    cloud: Any, green_statement: dict[str, Any], edit: Any, detail: str
) -> None:
    client, _, _, _ = cloud
    document = copy.deepcopy(green_statement)
    edit(document["statement"]["market_based"])
    report = _verify(client, _resign(client, document))
    assert (report.status, report.failed_step) == ("invalid", "statement_market_based"), report.as_json()
    assert detail in report.detail, report.detail


def test_an_edit_without_the_cloud_key_fails_the_signature(cloud: Any, green_statement: dict[str, Any]) -> None:
    client, _, _, _ = cloud
    document = copy.deepcopy(green_statement)
    _edit_figure(document["statement"]["market_based"])
    assert _verify(client, document).failed_step == "statement_signature"


def test_the_section_states_its_inputs_strictly(green_statement: dict[str, Any]) -> None:
    locations, instruments = section_inputs(green_statement["statement"]["market_based"])
    assert [i.kind for i in instruments] == ["gec", "ppa"] and len(locations) == 1


def _newer_catalogue(path: Path) -> Path:
    """The bundled catalogue with a later version that adds a (test) 2023 residual mix for Hebei, valid before
    the statements' issue: with the whole newer catalogue the rule would give it to a Hebei site."""
    doc = json.loads(BUNDLED.read_text())
    newer = {"version": "2026-12-04.1", "date": "2026-12-04"}
    doc["history"].append(newer)
    doc["catalogue_version"], doc["catalogue_date"] = newer["version"], newer["date"]
    national = next(f for f in doc["factors"] if f["id"] == RESIDUAL_2023[0])
    doc["factors"].append({**national, "id": "CN-HE-2023-excl-market-nonfossil-test", "region": "CN-HE",
                           "kg_per_kwh": "0.4000", "added_in": newer["version"]})
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


def _with_residual(client: TestClient, statement: dict[str, Any], factor_id: str, version: str | None = None
                   ) -> dict[str, Any]:
    """An insider's edit: the site's residual factor (and so the figures) replaced, re-signed with the cloud
    key; ``version`` also renames the catalogue version the section names."""
    from carbontrace_protocol.emission_factors import load_catalogue
    from carbontrace_protocol.market_based import factor_json

    document = copy.deepcopy(statement)
    market = document["statement"]["market_based"]
    if version is not None:
        market["catalogue_version"] = version
    site = market["sites"][0]
    factor = load_catalogue().factors[factor_id]
    site["residual_factor"] = factor_json(factor, None)
    covered_g = sum(u["emissions"]["g_e4"] for u in site["instruments"])
    grams = covered_g + site["energy_wh"]["residual"] * factor.kg_per_kwh_e4
    site["emissions"] = market["emissions"] = {**site["emissions"], "g_e4": grams,
                                               "t_co2": f"{grams // 10**10}.{grams % 10**10:010d}"}
    return _resign(client, document)


def test_a_newer_verifier_catalogue_checks_the_residual_exactly_against_the_named_version(
    cloud: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement names catalogue 2026-12-03.1; the verifier holds 2026-12-04.1, which adds a factor. The
    verifier applies the rule to the catalogue as of 2026-12-03.1: the honest statement verifies (the newer
    factor is not held against it), and an insider's older, lower residual-mix year is caught."""
    client, plain, _, _ = cloud
    statement = _statement(client, plain)
    assert statement["statement"]["market_based"]["catalogue_version"] == "2026-12-03.1"
    assert statement["statement"]["market_based"]["sites"][0]["residual_factor"]["id"] == RESIDUAL_2023[0]
    monkeypatch.setenv(CATALOGUE_ENV, str(_newer_catalogue(tmp_path / "newer.json")))
    honest = _verify(client, statement)
    assert honest.status == "valid", honest.as_json()
    assert "with catalogue 2026-12-03.1 (this verifier has 2026-12-04.1)" in honest.steps[-1].detail
    # 2022's residual mix (0.5856 < 2023's 0.6096): one the rule allowed by kind, region, year and validity
    older = _verify(client, _with_residual(client, statement, "CN-national-2022-excl-market-nonfossil"))
    assert (older.status, older.failed_step) == ("invalid", "statement_market_based"), older.as_json()
    assert "differs from the rule's figures" in older.detail
    # the newer version's factor, which the named version did not hold
    newer = _verify(client, _with_residual(client, statement, "CN-HE-2023-excl-market-nonfossil-test"))
    assert (newer.status, newer.failed_step) == ("invalid", "statement_market_based"), newer.as_json()
    # the older year naming the newer version instead is checked against that version's rule
    renamed = _verify(client, _with_residual(client, statement, "CN-national-2022-excl-market-nonfossil",
                                             "2026-12-04.1"))
    assert (renamed.status, renamed.failed_step) == ("invalid", "statement_market_based"), renamed.as_json()


def test_a_statement_naming_a_version_the_verifier_does_not_know_is_refused_with_the_reason(cloud: Any) -> None:
    """Not checked more loosely: an insider could otherwise name a made-up version to get the looser check."""
    client, plain, _, _ = cloud
    statement = _statement(client, plain)
    for version in ("2025-01-01.1", "2099-01-01.1"):
        report = _verify(client, _with_residual(client, statement, "CN-national-2022-excl-market-nonfossil",
                                                version))
        assert (report.status, report.failed_step) == ("invalid", "statement_market_based"), report.as_json()
        assert f"names factor catalogue version '{version}', which this verifier's catalogue" in report.detail
    # the statement's own residual but an unknown version: refused all the same
    report = _verify(client, _with_residual(client, statement, RESIDUAL_2023[0], "2025-01-01.1"))
    assert (report.status, report.failed_step) == ("invalid", "statement_market_based")


def test_a_version_dated_after_the_issue_cannot_be_named(
    cloud: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, plain, _, _ = cloud
    statement = _statement(client, plain)
    path = _newer_catalogue(tmp_path / "future.json")
    doc = json.loads(path.read_text())
    doc["history"][-1] = {"version": "2099-01-01.1", "date": "2099-01-01"}
    doc["catalogue_version"], doc["catalogue_date"] = "2099-01-01.1", "2099-01-01"
    for factor in doc["factors"]:
        if factor["added_in"] == "2026-12-04.1":
            factor["added_in"] = "2099-01-01.1"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    monkeypatch.setenv(CATALOGUE_ENV, str(path))
    report = _verify(client, _with_residual(client, statement, RESIDUAL_2023[0], "2099-01-01.1"))
    assert (report.status, report.failed_step) == ("invalid", "statement_market_based"), report.as_json()
    assert "after the statement's issue date" in report.detail


@pytest.mark.parametrize(("edit", "step"), [
    ({"issued_at": 10**12}, "bundle_format"),  # year 33658: a ValueError out of the verifier before
    ({"issued_at": 2**63}, "bundle_format"),  # past time_t: an OverflowError before
    ({"issued_at": -1}, "bundle_format"),
    ({"catalogue_version": 7}, "statement_market_based"),
    ({"catalogue_version": {"v": "2026-12-03.1"}}, "statement_market_based"),
    ({"catalogue_version": "x" * 1_000_000}, "statement_market_based"),
    ({"catalogue_version": "版本-2026"}, "statement_market_based"),
    ({"catalogue_version": None}, "statement_market_based"),
])
def test_an_odd_clock_or_catalogue_version_signed_by_an_insider_is_invalid_never_a_crash(
    cloud: Any, green_statement: dict[str, Any], edit: dict[str, Any], step: str
) -> None:
    client, _, _, _ = cloud
    document = copy.deepcopy(green_statement)
    if "issued_at" in edit:
        document["statement"]["issued_at"] = edit["issued_at"]
    else:
        document["statement"]["market_based"]["catalogue_version"] = edit["catalogue_version"]
    report = _verify(client, _resign(client, document))
    assert (report.status, report.failed_step) == ("invalid", step), report.as_json()
    assert len(report.detail) < 2000, "a megabyte value is not echoed back whole"
