"""docs/proof-bundle.md's worked example: it matches the JSON Schema, and every step that needs no chain
holds on its bytes (its embedded chain is gone); bundles the API serves match the schema too."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
from fastapi.testclient import TestClient

from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol import merkle, views
from carbontrace_protocol.batch import parse_header, parse_leaf
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.proof_verify import STEP_EXIT, VERDICT_EXIT
from carbontrace_protocol.verify import verify_es256, verify_reading
from tests.conftest import REPO_ROOT
from tests.trace.trace_kit import anchor, get, tenant_with_batches

DOCS = Path(REPO_ROOT) / "docs"
SCHEMA = json.loads((DOCS / "proof-bundle.schema.json").read_text())
EXAMPLE = json.loads((DOCS / "proof-bundle.example.json").read_text())


def test_example_matches_schema_and_its_pure_steps_hold() -> None:
    jsonschema_rs.validate(SCHEMA, EXAMPLE)
    bundle = ProofBundle.from_json(EXAMPLE)
    item, batch, checkpoint = bundle.items[0], bundle.batches[0], bundle.checkpoints[0]
    _, body = parse_leaf(item.leaf)
    reading = verify_reading(body, bundle.key(item.device_key or b"").public_key)
    assert views.view("reading", views.reading_content(reading), bundle.query.types) == item.view
    message, header = parse_header(batch.signed_header)
    size = header["readings"] + header["aggregates"]
    assert merkle.verify_inclusion(
        merkle.leaf_hash(item.leaf), item.leaf_index, size, list(item.batch_proof), header["root"]
    )
    assert verify_es256(bundle.key(batch.gateway_key).public_key, message.signed_bytes(), message.signature)
    signed = signed_checkpoint.parse(checkpoint.signed)
    cloud = bundle.key(signed.key_fingerprint)
    assert cloud.kind == "cloud" and verify_es256(
        cloud.public_key, signed.message.signed_bytes(), signed.message.signature
    )
    log_proof = list(batch.log_proof)
    assert merkle.verify_inclusion(
        merkle.leaf_hash(batch.signed_header), batch.log_index, signed.tree_size, log_proof, signed.root
    )
    newest = bundle.newest
    assert newest is not None
    consistency = list(checkpoint.consistency_to_newest)
    assert merkle.verify_consistency(signed.tree_size, newest.tree_size, signed.root, newest.root, consistency)


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
    broken = dict(bundle, version=1)
    assert not validator.is_valid(broken)


def test_the_docs_name_every_step_and_verdict_with_its_exit_code() -> None:
    text = (DOCS / "proof-bundle.md").read_text()
    missing = [
        f"{name} {code}" for name, code in (STEP_EXIT | VERDICT_EXIT).items() if f"| `{name}` | {code} |" not in text
    ]
    assert missing == [], "docs/proof-bundle.md lacks these rows of its step and verdict tables"
