"""docs/proof-bundle.md's worked example: it matches the JSON Schema, and every step that needs no chain
holds on its bytes (its embedded chain is gone); bundles the API serves match the schema too."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
from fastapi.testclient import TestClient

from carbontrace import verify_bundle as vb
from carbontrace_protocol import merkle, views
from tests.conftest import REPO_ROOT
from tests.trace.trace_kit import anchor, get, tenant_with_batches

DOCS = Path(REPO_ROOT) / "docs"
SCHEMA = json.loads((DOCS / "proof-bundle.schema.json").read_text())
EXAMPLE = json.loads((DOCS / "proof-bundle.example.json").read_text())


def test_example_matches_schema_and_its_pure_steps_hold() -> None:
    jsonschema_rs.validate(SCHEMA, EXAMPLE)
    query = vb.check_format(EXAMPLE)
    item, batch, device, checkpoint = (EXAMPLE[k][0] for k in ("items", "batches", "devices", "checkpoints"))
    key = bytes.fromhex(device["public_key"])
    assert vb.key_fingerprint(key).hex() == device["key_fingerprint"]
    assert vb.chain_id_of(device["device_id"]).hex() == device["chain_device_id"]
    leaf = bytes.fromhex(item["leaf"])
    content = vb.check_device_signature(leaf, device["device_id"], key)
    vb.check_decoded_view(item["view"], content, views.view("reading", content, query.types))
    assert (content["seq"], content["co2_ppm"], item["leaf_index"], batch["log_index"]) == (3, 600, 0, 1)
    header_bytes = bytes.fromhex(batch["signed_header"])
    message, header = vb.parse_signed_header(header_bytes)
    vb.check_batch_inclusion(leaf, item["leaf_index"], [bytes.fromhex(h) for h in item["batch_proof"]], header)
    vb.check_gateway_signature(message, header, bytes.fromhex(batch["gateway_public_key"]))
    cloud_key = bytes.fromhex(EXAMPLE["cloud_key"]["public_key"])
    size, root = vb.check_checkpoint_signature(bytes.fromhex(checkpoint["signed"]), cloud_key)
    assert (size, root.hex()[:4], root.hex()[-4:]) == (2, "2f66", "42f4")
    log_proof = [bytes.fromhex(h) for h in batch["log_proof"]]
    vb.check_log_inclusion(header_bytes, batch["log_index"], size, log_proof, root)
    newest = EXAMPLE["newest"]
    consistency = [bytes.fromhex(h) for h in checkpoint["consistency_to_newest"]]
    assert merkle.verify_consistency(size, newest["tree_size"], root, bytes.fromhex(newest["root"]), consistency)


def test_served_bundles_and_statements_match_the_schema(sqlite_client: TestClient) -> None:
    traced = tenant_with_batches(sqlite_client, "Schema Co", batches=2)
    anchor(sqlite_client)
    validator = jsonschema_rs.validator_for(SCHEMA)
    bundle = get(sqlite_client, "/api/v1/trace/bundle", traced.tenant.enterprise_key, limit=1000).json()
    assert len(bundle["items"]) == 12
    validator.validate(bundle)
    statement = get(
        sqlite_client,
        f"/api/v1/enterprises/{traced.tenant.enterprise_id}/statement",
        start=0,
        end=2_000_000_000,
    ).json()
    validator.validate(statement["bundle"])
    broken = dict(bundle, version=2)
    assert not validator.is_valid(broken)
