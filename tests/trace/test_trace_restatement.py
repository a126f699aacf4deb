"""Restatement end to end against the real cloud: a statement issued while the catalogue's newest national
factor was 2022's is restated once the 2023 factor has entered the catalogue. The same proven aggregates
(energy), emissions recomputed with the new factor, the original named by sha256; both documents verify,
are stored and listed, and a forged restatement does not verify."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import strict_json
from carbontrace_protocol.emission_factors import CATALOGUE_ENV, get_factor
from carbontrace_protocol.proof_verify import CheckFailed
from carbontrace_protocol.restatement import check_restates, document_sha256
from carbontrace_protocol.statement import factor_entries, verify_statement
from tests.cloud.cloud_testkit import auth
from tests.trace.test_trace_statements import _period, _resign, _statement
from tests.trace.trace_kit import Traced, anchor, get, ledger_of, reader_of, tenant_with_batches, trust_of

BUNDLED = Path(__file__).resolve().parents[2] / "carbontrace_protocol" / "data" / "emission_factors.json"


def _catalogue_before_2023_factors(path: Path) -> Path:
    """The bundled catalogue as it stood before the 2023 factors were published (its first state)."""
    doc = json.loads(BUNDLED.read_text())
    doc["factors"] = [f for f in doc["factors"] if f["reporting_year"] < 2023]
    doc["default"], doc["catalogue_version"] = "CN-national-2022", "test-before-2023"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Traced, dict[str, Any]]]:
    from tests.cloud.cloud_testkit import app_client, make_settings

    tmp = tmp_path_factory.mktemp("restatement")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(CATALOGUE_ENV, str(_catalogue_before_2023_factors(tmp / "catalogue-v1.json")))
        with app_client(make_settings(tmp)) as client:
            traced = tenant_with_batches(client, "Restated", batches=3)
            anchor(client)
            original = _statement(client, traced, *_period(traced))
            report = verify_statement(original, reader_of(client), trust_of(client))
            assert report.status == "valid", report.as_json()
            env.delenv(CATALOGUE_ENV)  # the 2023 factors enter the catalogue
            yield client, traced, original


def _restate(client: TestClient, traced: Traced, **body: Any) -> Any:
    return client.post(f"/api/v1/enterprises/{traced.tenant.enterprise_id}/restatements", json=body,
                       headers=auth(traced.tenant.enterprise_key))


def test_restatement_recomputes_the_same_activity_with_the_new_factor(issued: Any) -> None:
    client, traced, original = issued
    assert [f["id"] for f in original["statement"]["factors"]] == ["CN-national-2022"]
    r = _restate(client, traced, statement=original)
    assert r.status_code == 201, r.text
    answer = r.json()
    restated = answer["statement"]
    body, first = restated["statement"], original["statement"]
    assert body["restatement"] == {
        "restates": {"statement_sha256": document_sha256(original), "issued_at": first["issued_at"]},
        "factor_changes": [{"activity_year": 2023, "from": "CN-national-2022", "to": "CN-national-2023"}],
    }
    energy = first["figures"]["energy_wh"]
    assert body["figures"]["energy_wh"] == energy > 0 and restated["bundle"] == original["bundle"]
    new, old = get_factor("CN-national-2023"), get_factor("CN-national-2022")
    assert first["figures"]["emissions_g_e4"] == energy * old.kg_per_kwh_e4
    assert body["figures"]["emissions_g_e4"] == energy * new.kg_per_kwh_e4
    assert body["figures"]["emissions_g_e4_by_factor"] == {new.id: energy * new.kg_per_kwh_e4}
    # the same attribution (measured and substituted energy), its emissions under the new factor
    before, after = first["figures"]["attribution"], body["figures"]["attribution"]
    assert after["energy_wh"] == before["energy_wh"] and after["shares"] == before["shares"]
    assert after["emissions"]["total"]["g_e4"] == energy * new.kg_per_kwh_e4
    assert body["factors"] == factor_entries([old.id, new.id])
    assert body["factors"][1]["source"]["title"].startswith("关于发布2023年电力二氧化碳排放因子的公告")
    # the market-based figure too: the original's residual mix was 2022's (the only one its catalogue had), the
    # restatement's is 2023's; the same energy and sites. The original still verifies with the newer catalogue:
    # its residual is one the rule allows for its catalogue version (docs/accounting.md "Market-based Scope 2")
    (first_site,), (restated_site,) = first["market_based"]["sites"], body["market_based"]["sites"]
    assert first["market_based"]["catalogue_version"] == "test-before-2023"
    assert first_site["residual_factor"]["id"] == "CN-national-2022-excl-market-nonfossil"
    assert restated_site["residual_factor"]["id"] == "CN-national-2023-excl-market-nonfossil"
    assert restated_site["energy_wh"] == first_site["energy_wh"]
    assert body["market_based"]["emissions"]["g_e4"] == energy * 6096
    for document in (original, restated):  # both verify, each on its own
        report = verify_statement(document, reader_of(client), trust_of(client))
        assert report.status == "valid", report.as_json()
        assert report.steps[-1].step == "statement_market_based"
    check_restates(original, restated)
    # both stored, retrievable by the enterprise and a regulator, listed with the change
    for cid, document in ((answer["original_cid"], original), (answer["restated_cid"], restated)):
        page = get(client, f"/api/v1/statements/pages/{cid}", traced.tenant.enterprise_key)
        assert page.status_code == 200 and page.content == strict_json.canonical(document)
    listed = get(client, f"/api/v1/enterprises/{traced.tenant.enterprise_id}/restatements",
                 traced.tenant.enterprise_key).json()
    assert [(x["original_cid"], x["restated_cid"]) for x in listed] == [(answer["original_cid"], answer["restated_cid"])]
    assert listed[0]["factor_changes"] == body["restatement"]["factor_changes"]
    # a restatement of the restatement has nothing newer to apply
    again = _restate(client, traced, statement_cid=answer["restated_cid"])
    assert again.status_code == 409, again.text


def test_a_forged_restatement_does_not_verify(issued: Any) -> None:
    client, traced, original = issued
    restated = _restate(client, traced, statement=original).json()["statement"]
    key = ledger_of(client).signing_key
    # an insider with the cloud key restates to the Southwest grid's lower factor, figures made consistent
    forged = copy.deepcopy(restated)
    body = forged["statement"]
    body["restatement"]["factor_changes"][0]["to"] = "CN-southwest-2023"
    low = get_factor("CN-southwest-2023")
    body["figures"]["emissions_g_e4"] = body["figures"]["energy_wh"] * low.kg_per_kwh_e4
    forged = _resign(forged, key, recompute=False)
    report = verify_statement(forged, reader_of(client), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", "statement_figures"), report.as_json()
    # a restatement that names another original
    other = copy.deepcopy(restated)
    other["statement"]["restatement"]["restates"]["statement_sha256"] = "00" * 32
    other = _resign(other, key, recompute=False)
    assert verify_statement(other, reader_of(client), trust_of(client)).status == "valid"  # alone it is consistent
    with pytest.raises(CheckFailed):
        check_restates(original, other)  # but it does not restate this statement
    # an edited original is refused by the cloud
    edited = copy.deepcopy(original)
    edited["statement"]["figures"]["energy_wh"] += 1
    assert _restate(client, traced, statement=edited).status_code == 422


def test_the_cli_restates_a_stored_statement(issued: Any) -> None:
    """`carbontrace factors restate --cid`: the client function the command runs, against the real cloud."""
    from carbontrace.factors_cli import restate

    client, traced, original = issued
    first = _restate(client, traced, statement=original).json()
    answer = restate(client, traced.tenant.enterprise_key, traced.tenant.enterprise_id, None, first["original_cid"])
    assert answer["original_cid"] == first["original_cid"]
    restated = answer["statement"]
    assert restated["statement"]["restatement"]["restates"]["statement_sha256"] == document_sha256(original)
    assert verify_statement(restated, reader_of(client), trust_of(client)).status == "valid"
    with pytest.raises(RuntimeError, match="409"):
        restate(client, traced.tenant.enterprise_key, traced.tenant.enterprise_id, None, answer["restated_cid"])


def test_only_the_enterprise_or_a_regulator_issues_a_restatement(issued: Any) -> None:
    client, traced, original = issued
    path = f"/api/v1/enterprises/{traced.tenant.enterprise_id}/restatements"
    assert client.post(path, json={"statement": original}).status_code == 403  # the public
    r = client.post(path, json={"statement": original}, headers=auth(traced.tenant.engineer_key))
    assert r.status_code == 403
    other = tenant_with_batches(client, "Restated Other", batches=1)
    r = client.post(path, json={"statement": original}, headers=auth(other.tenant.enterprise_key))
    assert r.status_code == 403
    mine = f"/api/v1/enterprises/{other.tenant.enterprise_id}/restatements"
    r = client.post(mine, json={"statement": original}, headers=auth(other.tenant.enterprise_key))
    assert r.status_code == 422  # not that enterprise's statement
