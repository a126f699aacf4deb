"""Chamber fluxes traced by their own data type: locate → retrieve → verify through the API, a bundle that verifies
offline against the chain, and access_scope deciding who sees them (the enterprise and regulators; not the public,
not a platform). A concentration query never returns a flux, and a flux query never a reading."""

from __future__ import annotations

from fastapi.testclient import TestClient

from carbontrace_protocol import flux
from carbontrace_protocol.proof_verify import verify_bundle_json as verify_bundle
from tests.cloud.cloud_testkit import upload
from tests.trace.test_trace_api import STEP_ORDER
from tests.trace.trace_kit import anchor, get, reader_of, session_flux, tenant_with_batches, trust_of


def test_a_flux_is_located_retrieved_and_verified_by_its_own_type(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Flux-Trace", batches=1)
    gw = traced.tenant.gateway
    chamber = gw.devices[0]
    batch, readings = gw.build(per_device=6, fluxes=lambda rs: [session_flux(chamber, rs)])
    assert upload(client, gw, batch).status_code == 201
    gw.accepted(batch, readings)
    anchor(client)
    key, ent = traced.tenant.enterprise_key, traced.tenant.enterprise_id
    signed = batch.fluxes()[0][1]
    record = flux.parse_signed_flux(signed)[1]

    r = get(client, "/api/v1/trace/locate", key, types="flux")
    assert r.status_code == 200, r.text
    located = r.json()["items"]
    assert [(x["kind"], x["device_id"], x["leaf_index"], x["time"]) for x in located] == [
        ("flux", chamber.device_id, batch.fluxes()[0][0], record.session)]
    assert located[0]["anchored"]

    r = get(client, "/api/v1/trace/verify", key, types="flux")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "valid", body
    (item,) = body["items"]
    assert [s["step"] for s in item["steps"]] == STEP_ORDER
    steps = {s["step"]: s["ok"] for s in item["steps"]}
    assert steps["device_signature"] is True and steps["reading_time"] is None and steps["consistency"] is True
    assert item["view"]["flux"] == {"e": -3, "m": record.flux_e3} and item["view"]["qa"] == "ok"
    assert item["view"]["seq"] == record.seq == [3, 8] and item["view"]["type"] == "chamber_flux"

    bundle = get(client, "/api/v1/trace/bundle", key, types="flux").json()
    assert [i["kind"] for i in bundle["items"]] == ["flux"] and bundle["items"][0]["device_key"]
    report = verify_bundle(bundle, reader_of(client), trust_of(client))
    assert report.status == "valid", report.as_json()

    # types keep fluxes and concentrations apart
    co2 = get(client, "/api/v1/trace/locate", key, types="co2").json()["items"]
    assert co2 and {x["kind"] for x in co2} == {"reading"}
    fluxes_and_aggregates = get(client, "/api/v1/trace/locate", key, types=["flux", "aggregates"]).json()["items"]
    assert {x["kind"] for x in fluxes_and_aggregates} == {"flux", "aggregate"}

    # who sees it: access_scope's DATA_SCOPE (the flux column is the readings')
    assert get(client, "/api/v1/trace/locate", types="flux", enterprise_id=ent).status_code == 403  # the public
    public_default = get(client, "/api/v1/trace/locate", enterprise_id=ent).json()["items"]
    assert "flux" not in {x["kind"] for x in public_default}  # the public's own types: aggregates, emissions


def test_a_tampered_flux_bundle_fails_at_its_device_signature(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Flux-Tamper", batches=1)
    gw = traced.tenant.gateway
    batch, _readings = gw.build(per_device=6, fluxes=lambda rs: [session_flux(gw.devices[0], rs)])
    assert upload(client, gw, batch).status_code == 201
    anchor(client)
    bundle = get(client, "/api/v1/trace/bundle", traced.tenant.enterprise_key, types="flux").json()
    item = bundle["items"][0]
    leaf = bytearray(bytes.fromhex(item["leaf"]))
    leaf[-1] ^= 1  # one bit of the device's signature
    item["leaf"] = bytes(leaf).hex()
    report = verify_bundle(bundle, reader_of(client), trust_of(client))
    assert report.status == "invalid"
    assert report.items[0].failed_step == "device_signature"
