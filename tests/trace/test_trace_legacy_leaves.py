"""Issue 16: an aggregate leaf of format 1 (stored before selective disclosure: the whole map in clear) cannot
close CO2, so it is withheld from every caller who may not see CO2 (cloud/access_scope.py), counted, with a
reason, and never put in their bundle or statement; a regulator and the enterprise still get it and verify it.

The legacy batch is a real format 1 batch (clear aggregate leaves, re-signed by the gateway key) uploaded to a
cloud whose ingest gate is the one from before format 2 (it took clear aggregates); the gate is restored before
anything else is uploaded or read. Real cloud over SQLite and PostgreSQL, real chain, the verifier the CLI uses.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import cbor
from carbontrace_protocol.proof_verify import verify_bundle_json
from carbontrace_protocol.statement import verify_statement
from carbontrace_protocol.statement_summary import verify_summary
from carbontrace_protocol.views import fields_in_clear
from tests.cloud.cloud_testkit import (
    ADMIN_KEY,
    auth,
    decide_binding,
    format1_batch,
    format1_ingest_gate,
    register_platform,
    register_tenant,
    request_binding,
    upload,
)
from tests.trace.trace_kit import anchor, get, reader_of, trust_of

CO2 = 31337  # distinctive


@pytest.fixture
def legacy(client: TestClient) -> dict[str, Any]:
    tenant = register_tenant(client, "Legacy", devices=1)
    batch, (aggregate,) = format1_batch(tenant.gateway, CO2)
    with format1_ingest_gate():
        assert upload(client, tenant.gateway, batch).status_code == 201
    current, readings = tenant.gateway.build(co2=CO2 + 100)
    assert upload(client, tenant.gateway, current).status_code == 201
    tenant.gateway.accepted(current, readings)
    anchor(client)
    platform_id, platform_key, platform_chain_key = register_platform(client, "Legacy Exchange")
    assert request_binding(client, tenant.enterprise_id, tenant.enterprise_key, tenant.chain_key,
                           platform_id).status_code == 201
    assert decide_binding(client, platform_id, platform_key, platform_chain_key,
                          tenant.enterprise_id).json()["state"] == "bound"
    regulator = client.post("/api/v1/regulators", json={"label": "legacy"}, headers=auth(ADMIN_KEY))
    co2_clear = cbor.encode(aggregate["co2"])
    return {"tenant": tenant, "leaf": batch.leaves[-1], "co2": co2_clear, "platform": platform_key,
            "regulator": regulator.json()["api_key"], "period": (batch.header["window"][0], current.header["window"][1])}


def _no_co2(response: Any, legacy: dict[str, Any]) -> None:
    """Nothing in the whole answer carries the legacy CO2: not the leaf, not its clear CO2 map (hex or raw)."""
    body = response.content
    for needle in (legacy["co2"], legacy["leaf"]):
        assert needle not in body and needle.hex().encode() not in body


def _bundle_leaves_close_co2(bundle: dict[str, Any]) -> None:
    for item in bundle["items"]:
        assert "co2" not in fields_in_clear(bytes.fromhex(item["leaf"])), item["batch_id"]


def _withheld(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in bundle["retrieval_failures"] if f["failed_step"] == "withheld"]


@pytest.mark.parametrize("who", ["public", "platform"])
def test_a_format_1_leaf_is_withheld_from_the_public_and_a_platform(
    client: TestClient, legacy: dict[str, Any], who: str
) -> None:
    key = legacy["platform"] if who == "platform" else None
    ent = legacy["tenant"].enterprise_id
    bundle = get(client, "/api/v1/trace/bundle", key=key, types="emissions", enterprise_id=ent)
    assert bundle.status_code == 200, bundle.text
    _no_co2(bundle, legacy)
    _bundle_leaves_close_co2(bundle.json())
    assert len(_withheld(bundle.json())) == 1 and len(bundle.json()["items"]) == 1
    report = verify_bundle_json(bundle.json(), reader_of(client), trust_of(client))
    assert report.status == "incomplete" and "1 leaf(s) withheld" in report.detail, report.as_json()
    cbor_bundle = get(client, "/api/v1/trace/bundle", key=key, types="emissions", enterprise_id=ent, encoding="cbor")
    _no_co2(cbor_bundle, legacy)

    verified = get(client, "/api/v1/trace/verify", key=key, types="emissions", enterprise_id=ent)
    _no_co2(verified, legacy)
    answer = verified.json()
    assert (answer["status"], answer["withheld"], answer["count"]) == ("incomplete", 1, 2), answer
    (entry,) = [i for i in answer["items"] if i["status"] == "withheld"]
    assert entry["cid"] is None and entry["view"] is None and "co2" in entry["withheld"]
    assert entry["steps"] == [{"step": "withheld", "ok": None, "detail": entry["withheld"]}]
    located = get(client, "/api/v1/trace/locate", key=key, types="emissions", enterprise_id=ent).json()
    assert located["withheld"] == 1 and sum(1 for i in located["items"] if i["withheld"]) == 1

    start, end = legacy["period"]
    statement = get(client, f"/api/v1/enterprises/{ent}/statement", key=key, start=start, end=end)
    assert statement.status_code == 200, statement.text
    _no_co2(statement, legacy)
    _bundle_leaves_close_co2(statement.json()["bundle"])
    assert len(_withheld(statement.json()["bundle"])) == 1
    assert statement.json()["statement"]["figures"]["aggregates"] == 1
    report = verify_statement(statement.json(), reader_of(client), trust_of(client))
    assert report.status == "incomplete" and "withheld" in report.detail, report.as_json()


def test_the_regulator_and_the_enterprise_still_get_and_verify_the_format_1_leaf(
    client: TestClient, legacy: dict[str, Any]
) -> None:
    ent = legacy["tenant"].enterprise_id
    start, end = legacy["period"]
    for key in (legacy["regulator"], legacy["tenant"].enterprise_key):
        bundle = get(client, "/api/v1/trace/bundle", key=key, types=["aggregates", "co2"], enterprise_id=ent)
        assert bundle.status_code == 200, bundle.text
        assert legacy["leaf"].hex() in bundle.text and legacy["co2"].hex() in bundle.text
        assert not bundle.json()["retrieval_failures"]
        report = verify_bundle_json(bundle.json(), reader_of(client), trust_of(client))
        assert report.status == "valid", report.as_json()
        statement = get(client, f"/api/v1/enterprises/{ent}/statement", key=key, start=start, end=end)
        assert statement.json()["statement"]["figures"]["aggregates"] == 2
        assert verify_statement(statement.json(), reader_of(client), trust_of(client)).status == "valid"


def test_a_stored_page_holding_a_format_1_leaf_is_not_served_to_the_public(
    client: TestClient, legacy: dict[str, Any]
) -> None:
    ent = legacy["tenant"].enterprise_id
    start, end = legacy["period"]
    summary = get(client, f"/api/v1/enterprises/{ent}/statement-summary", key=legacy["regulator"],
                  start=start, end=end, page_s=end - start)
    assert summary.status_code == 200, summary.text
    (page,) = summary.json()["summary"]["pages"]
    assert get(client, f"/api/v1/statements/pages/{page['cid']}", key=legacy["regulator"]).status_code == 200
    public = get(client, f"/api/v1/statements/pages/{page['cid']}")
    assert public.status_code == 403
    _no_co2(public, legacy)
    # the public's own summary of the period is built without the leaf, and its page is served
    own = get(client, f"/api/v1/enterprises/{ent}/statement-summary", start=start, end=end, page_s=end - start)
    (own_page,) = own.json()["summary"]["pages"]
    served = get(client, f"/api/v1/statements/pages/{own_page['cid']}")
    assert served.status_code == 200
    _no_co2(served, legacy)
    # and the summary says it is incomplete for the public, as its page does
    report = verify_summary(own.json(), {own_page["cid"]: served.json()}, reader_of(client), trust_of(client))
    assert report.status == "incomplete", report.as_json()
    regulator_page = get(client, f"/api/v1/statements/pages/{page['cid']}", key=legacy["regulator"]).json()
    report = verify_summary(summary.json(), {page["cid"]: regulator_page}, reader_of(client), trust_of(client))
    assert report.status == "valid", report.as_json()


def test_the_console_emissions_sum_only_what_the_caller_can_verify(client: TestClient, legacy: dict[str, Any]) -> None:
    """The console's SQL emissions apply trace's rule leaf by leaf: a platform is not shown a total that holds a
    window it cannot verify (trace withholds the format 1 leaf from it); the regulator's total holds it."""
    ent = legacy["tenant"].enterprise_id
    legacy_start = legacy["period"][0]
    full = get(client, "/api/v1/console/emissions", key=legacy["regulator"], enterprise_id=ent).json()
    assert full["withheld"] == 0 and full["withheld_reason"] is None, full
    by_window = {p["window"][0]: p["emissions_g_e4"] for p in full["points"]}
    assert legacy_start in by_window and len(by_window) == 2, full
    assert get(client, "/api/v1/console/emissions", key=legacy["tenant"].enterprise_key,
               enterprise_id=ent).json() == full

    seen = get(client, "/api/v1/console/emissions", key=legacy["platform"], enterprise_id=ent)
    assert seen.status_code == 200, seen.text
    _no_co2(seen, legacy)
    shown = seen.json()
    assert shown["withheld"] == 1 and "co2" in shown["withheld_reason"], shown
    assert [p["window"][0] for p in shown["points"]] == [w for w in by_window if w != legacy_start]
    assert shown["total"]["g_e4"] == full["total"]["g_e4"] - by_window[legacy_start]
    # and that total is what trace lets the platform verify: the one leaf it is given
    verified = get(client, "/api/v1/trace/verify", key=legacy["platform"], types="emissions", enterprise_id=ent).json()
    assert sum(1 for i in verified["items"] if i["status"] == "valid") == len(shown["points"])
