"""A re-timed reading (taken before its device's time sync) verifies from its proof bundle alone: the item carries
the device-signed reference it was re-timed from, and the verifier re-derives its time for the view and the
period, in JSON and in CBOR, through the cloud's trace API and offline."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol.bundle_wire import JSON, CborWire, ProofHashTable, Wire
from carbontrace_protocol.proof_bundle import BundleFormatError, ItemEntry, ProofBundle
from carbontrace_protocol.proof_verify import verify_bundle_cbor, verify_bundle_json
from carbontrace_protocol.retime import retimed_timestamp
from carbontrace_protocol.statement import verify_statement
from tests.cloud.cloud_testkit import register_tenant
from tests.trace.test_conformance import CASES, load
from tests.trace.test_trace_statements import _statement
from tests.trace.trace_kit import (
    Traced,
    anchor,
    get,
    reader_of,
    tenant_with_batches,
    trust_of,
    upload_retimed_batch,
)


def test_a_retimed_reading_verifies_from_its_bundle(sqlite_client: TestClient) -> None:
    client = sqlite_client
    traced = tenant_with_batches(client, "Retimed-Trace", batches=1, devices=1)
    retimed = upload_retimed_batch(client, traced)
    anchor(client)
    key, device = traced.tenant.enterprise_key, retimed.unsynced.device_id
    at = retimed.retimed_at
    assert at == retimed_timestamp(retimed.unsynced, retimed.reference)
    period = {"device_id": device, "types": "co2", "start": at, "end": at + 1}

    r = get(client, "/api/v1/trace/verify", key, **period)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "valid", body
    (item,) = body["items"]
    assert item["view"]["seq"] == retimed.unsynced.seq and item["view"]["timestamp"] == at
    steps = {s["step"]: s for s in item["steps"]}
    assert steps["reading_time"]["ok"] is True and f"re-timed to {at}" in steps["reading_time"]["detail"]
    assert steps["query_match"]["ok"] is True

    r = get(client, "/api/v1/trace/bundle", key, **period)
    assert r.status_code == 200, r.text
    document = r.json()
    (entry,) = document["items"]
    assert bytes.fromhex(entry["retime_reference"]) == retimed.signed_reference
    assert entry["view"]["timestamp"] == at
    chain, trust = reader_of(client), trust_of(client)
    report = verify_bundle_json(document, chain, trust)
    assert (report.status, report.exit_code) == ("valid", 0), report.as_json()

    r = get(client, "/api/v1/trace/bundle", key, encoding="cbor", **period)
    assert r.status_code == 200, r.text
    assert ProofBundle.from_cbor(r.content).items[0].retime_reference == retimed.signed_reference
    report = verify_bundle_cbor(r.content, chain, trust)
    assert (report.status, report.exit_code) == ("valid", 0), report.as_json()

    # the re-derived time is the one that counts: a period before it does not hold the reading
    r = get(client, "/api/v1/trace/verify", key, device_id=device, types="co2", start=at - 100, end=at)
    assert r.status_code == 200 and r.json()["status"] == "empty", r.text
    # the whole batch: the synced reference reading carries no evidence, the unsynced one does
    r = get(client, "/api/v1/trace/bundle", key, device_id=device, types="co2", start=at, end=at + 60)
    items = r.json()["items"]
    assert [("retime_reference" in i, i["view"]["timestamp"]) for i in items] == [(True, at), (False, at + 50)]
    assert verify_bundle_json(r.json(), chain, trust).status == "valid"


def _case_bundle(name: str) -> ProofBundle:
    return ProofBundle.from_json(load(next(p for p in CASES if p.stem == name))["document"])


@pytest.mark.parametrize("encoding", ["json", "cbor"])
def test_retime_reference_is_optional_and_only_on_a_reading(encoding: str) -> None:
    bundle = _case_bundle("valid-retimed-reading")
    aggregate_bundle = _case_bundle("valid-aggregate")
    # a CBOR proof indexes its bundle's hash table: one table for the parts of both bundles used here
    wire: Wire = JSON if encoding == "json" else CborWire(
        ProofHashTable.of([*bundle.proofs(), *aggregate_bundle.proofs()]))
    cbor_wire = encoding == "cbor"
    unsynced, synced = (item.write(wire) for item in bundle.items)
    key = 9 if cbor_wire else "retime_reference"
    assert key in unsynced and key not in synced  # absent on the synced reading, not null
    assert ItemEntry.read(unsynced, wire) == bundle.items[0]
    reference = unsynced[key]
    aggregate = aggregate_bundle.items[0].write(wire)
    for refused, why in (
        ({**synced, key: None}, "absent, not null"),
        ({**aggregate, key: reference}, "only a reading item"),
        ({**unsynced, key: wire.write_bytes(b"")}, "must not be empty"),
        ({**unsynced, (10 if cbor_wire else "retimed_at"): 1764126000}, "unknown"),
    ):
        with pytest.raises(BundleFormatError, match=why):
            ItemEntry.read(refused, wire)


def test_a_statement_over_a_batch_with_a_retimed_reading_verifies(sqlite_client: TestClient) -> None:
    client = sqlite_client
    traced = Traced(register_tenant(client, "Retimed-Statement", devices=1))
    retimed = upload_retimed_batch(client, traced)
    anchor(client)
    window = retimed.batch.header["window"]
    document = _statement(client, traced, window[0], window[1] + 600)
    assert document["statement"]["completeness"]["gateways"][0]["batches"] == 1
    report = verify_statement(document, reader_of(client), trust_of(client))
    assert report.status == "valid", report.as_json()
