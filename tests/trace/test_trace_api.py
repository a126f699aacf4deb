"""Locate → retrieve → verify through the API, type filtering, pending batches, bundles and statements."""

from __future__ import annotations

from fastapi.testclient import TestClient

from carbontrace_protocol.proof_verify import verify_bundle_json as verify_bundle
from carbontrace_protocol.views import AGGREGATE_PUBLIC_FIELDS
from tests.trace.trace_kit import anchor, get, ledger_of, reader_of, tenant_with_batches, trust_of, upload_batches

STEP_ORDER = [
    "content_store",
    "sql_index",
    "device_key",
    "device_signature",
    "reading_time",
    "field_openings",
    "decoded_view",
    "batch_inclusion",
    "gateway_signature",
    "query_match",
    "checkpoint_signature",
    "log_inclusion",
    "chain_anchor",
    "consistency",
]


def test_trace_readings_end_to_end(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Trace-A", batches=2)
    ent, key = traced.tenant.enterprise_id, traced.tenant.enterprise_key
    anchor(client)
    upload_batches(client, traced, 1)  # after the anchor: pending
    device = traced.tenant.gateway.devices[0].device_id

    r = get(client, "/api/v1/trace/locate", key, device_id=device, types="co2")
    assert r.status_code == 200, r.text
    located = r.json()["items"]
    assert [x["kind"] for x in located] == ["reading"] * 6
    assert [x["log_index"] for x in located] == [0, 0, 1, 1, 2, 2]
    assert [x["checkpoint_seq"] for x in located] == [0, 0, 0, 0, None, None]

    r = get(client, "/api/v1/trace/verify", key, device_id=device, types="co2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "pending" and body["query"]["enterprise_id"] == ent
    items = body["items"]
    for item in items[:4]:
        assert item["status"] == "valid", item
        assert [s["step"] for s in item["steps"]] == STEP_ORDER
        assert all(s["ok"] for s in item["steps"])
    for item in items[4:]:
        assert item["status"] == "pending" and item["failed_step"] is None
        assert {s["step"]: s["ok"] for s in item["steps"]}["gateway_signature"] is True
        assert {s["step"]: s["ok"] for s in item["steps"]}["chain_anchor"] is None
    # Type filtering: the decoded view shows only CO2 next to the reading's identity.
    expected = [r_ for r_ in traced.readings if r_.device_id == device]
    assert [i["view"] for i in items] == [
        {
            "device_id": device,
            "seq": x.seq,
            "timestamp": x.timestamp,
            "firmware": "1.0.0",
            "flags": 0,
            "co2_ppm": x.co2_ppm,
        }
        for x in expected
    ]
    anchor(client)
    r = get(client, "/api/v1/trace/verify", key, device_id=device, types=["energy", "humidity"])
    assert r.json()["status"] == "valid"
    assert set(r.json()["items"][0]["view"]) == {
        "device_id",
        "seq",
        "timestamp",
        "firmware",
        "flags",
        "energy_wh",
        "power_deci_w",
        "humidity_centi_pct",
    }


def test_aggregates_and_emissions_filter(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Trace-B", batches=2)
    anchor(client)
    r = get(client, "/api/v1/trace/verify", types="emissions", enterprise_id=traced.tenant.enterprise_id)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "valid", body
    assert [i["kind"] for i in body["items"]] == ["aggregate"] * 4
    for item in body["items"]:
        assert set(item["view"]) == {"v", "device", "window", *AGGREGATE_PUBLIC_FIELDS}
        steps = {s["step"]: s["ok"] for s in item["steps"]}
        assert steps["device_signature"] is None and steps["consistency"] is True
    bundle = get(client, "/api/v1/trace/bundle", types="emissions", enterprise_id=traced.tenant.enterprise_id).json()
    for item in bundle["items"]:  # the bundle opens the public fields, each [16-byte salt, value]; co2 stays closed
        assert set(item["openings"]) == set(AGGREGATE_PUBLIC_FIELDS), item
        assert {bytes.fromhex(o)[:2] for o in item["openings"].values()} == {bytes([0x82, 0x50])}
    r = get(client, "/api/v1/trace/retrieve", types="aggregates", enterprise_id=traced.tenant.enterprise_id)
    assert r.json()["status"] == "retrieved"
    assert "co2" not in r.json()["items"][0]["view"] and "received" in r.json()["items"][0]["view"]
    r = get(client, "/api/v1/trace/verify", key=traced.tenant.enterprise_key, types=["aggregates", "co2"])
    aggregates = [i for i in r.json()["items"] if i["kind"] == "aggregate"]
    assert r.json()["status"] == "valid" and aggregates, r.json()
    assert all("co2" in i["view"] and "temp_mean" not in i["view"] for i in aggregates)


def test_bundle_verifies_offline(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Trace-C", batches=3)
    anchor(client)
    upload_batches(client, traced, 1)
    anchor(client)  # two anchors: the first checkpoint's bundle carries a consistency proof to the newest
    key = traced.tenant.enterprise_key
    r = get(client, "/api/v1/trace/bundle", key, types=["co2", "aggregates"], limit=1000)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    bundle = r.json()
    assert len(bundle["items"]) == 4 * 2 * 2 + 4 * 2  # batches × devices × readings + aggregates
    assert [c["seq"] for c in bundle["checkpoints"]] == [0, 1] and bundle["newest"]["seq"] == 1
    report = verify_bundle(bundle, reader_of(client), trust_of(client))
    assert report.status == "valid", report.as_json()
    assert report.exit_code == 0


def test_rpc_endpoint_is_read_only(sqlite_client: TestClient) -> None:
    client = sqlite_client
    tenant_with_batches(client, "Trace-D", batches=1)
    anchor(client)
    ledger = ledger_of(client)
    r = client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    assert r.json() == {"jsonrpc": "2.0", "id": 1, "result": hex(ledger.chain.connect().chain_id)}
    address = ledger.chain.registry().address
    r = client.post("/rpc", json={"jsonrpc": "2.0", "id": 2, "method": "eth_getCode", "params": [address, "latest"]})
    assert len(r.json()["result"]) > 1000
    data = ledger.chain.registry().contract.functions.checkpointCount()._encode_transaction_data()
    call = {"jsonrpc": "2.0", "id": 3, "method": "eth_call", "params": [{"to": address, "data": data}, "latest"]}
    assert int(client.post("/rpc", json=call).json()["result"], 16) == 1
    for method in ("eth_sendTransaction", "eth_sendRawTransaction", "eth_sign", "personal_unlockAccount", "evm_mine"):
        r = client.post("/rpc", json={"jsonrpc": "2.0", "id": 4, "method": method, "params": [{}]})
        assert r.status_code == 200 and r.json()["error"]["code"] == -32601, r.text
    r = client.post("/rpc", json=[{"jsonrpc": "2.0", "id": 5, "method": "eth_blockNumber"}, "junk"])
    assert int(r.json()[0]["result"], 16) > 0 and r.json()[1]["error"]["code"] == -32600
    assert ledger.chain.registry().checkpoint_count() == 1
