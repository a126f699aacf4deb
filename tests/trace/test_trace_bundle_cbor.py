"""The CBOR encoding of proof bundles (docs/proof-bundle.md, "CBOR encoding").

Its conformance is the JSON set's: every bundle case of docs/conformance that parses, written in CBOR, reaches
the same verdict, failed step and exit code; one refused as a whole (its parts parse) is refused with the same
detail. Beside it: CBOR read as strictly as JSON (deterministic encoding
only, exact keys and types), the route's CBOR branch, and the size of one reading's bundle at 10^7 log leaves.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace.benchmarks import bundle_size
from carbontrace.benchmarks.proofs_bench import BUNDLE_LOG_LEAVES, CBOR_TARGET_BYTES
from carbontrace_protocol import bundle_wire, cbor, strict_json
from carbontrace_protocol.bundle_wire import JSON, CborWire, ProofHashTable, exact_fields
from carbontrace_protocol.proof_bundle import (
    BatchEntry,
    BundleFormatError,
    CheckpointEntry,
    ItemEntry,
    KeyEntry,
    NewestAnchor,
    ProofBundle,
    Query,
    RetrievalFailure,
    Trust,
    proofs_of,
)
from carbontrace_protocol.proof_verify import STEP_EXIT, verify_bundle_cbor, verify_bundle_json
from carbontrace_protocol.recorded_chain import RecordedChain
from carbontrace_protocol.views import same_json
from tests.conftest import REPO_ROOT
from tests.trace.test_conformance import CASES, load
from tests.trace.trace_kit import anchor, auth, get, reader_of, tenant_with_batches, trust_of

# the one case whose document has no CBOR form: a view holding a float (CBOR has none in our profile); its CBOR
# counterpart, a float in a view, is refused earlier, at bundle_format (test_a_float_in_a_view_is_bundle_format)
NO_CBOR_FORM = {"tamper-view-integer-written-as-a-float"}
BUNDLE_FORMAT = ("invalid", "bundle_format", STEP_EXIT["bundle_format"])


def _bundle_document(case: dict[str, Any]) -> Any:
    if "document" in case:
        return case["document"]
    try:
        return strict_json.loads(case["document_text"])
    except strict_json.StrictJSONError:
        return None  # JSON text that is not JSON: nothing to write in CBOR


def parsed_bundle_cases() -> list[tuple[Path, ProofBundle]]:
    """Every case whose document is a proof bundle that parses (a document refused at bundle_format is not a
    bundle, so it has no CBOR form to compare; statements and summaries stay JSON)."""
    out = []
    for path in CASES:
        document = _bundle_document(load(path))
        if not isinstance(document, dict) or document.get("format") != "carbontrace-proof-bundle":
            continue
        try:
            out.append((path, ProofBundle.from_json(document)))
        except BundleFormatError:
            continue
    return out


def cbor_twin(document: Any) -> bytes | None:
    """A bundle refused only as a whole (a reference, the limit, the version), written in CBOR part by part, so its
    twin is refused for the same reason; None when a part itself does not parse (then it has no CBOR form)."""
    lists = {"keys": KeyEntry, "checkpoints": CheckpointEntry, "batches": BatchEntry, "items": ItemEntry}
    try:
        doc = exact_fields(document, "bundle", ProofBundle.FIELDS)
        chain = exact_fields(doc["chain"], "chain", ProofBundle.CHAIN_FIELDS)
        parts = {name: [part.read(v, JSON) for v in doc[name]] for name, part in lists.items()}
        table = ProofHashTable.of(proofs_of(parts["checkpoints"], parts["batches"], parts["items"]))
        wire = CborWire(table)
        registry = wire.write_address(JSON.read_address(chain["registry"], "registry"))
        tree = {
            "format": doc["format"],
            "version": doc["version"],
            "chain": wire.object(ProofBundle.CHAIN_FIELDS, {"chain_id": chain["chain_id"], "registry": registry}),
            "query": Query.read(doc["query"], JSON).write(wire),
            "newest": None if doc["newest"] is None else NewestAnchor.read(doc["newest"], JSON).write(wire),
            "retrieval_failures": [RetrievalFailure.read(f, JSON).write(wire) for f in doc["retrieval_failures"]],
            **{name: [v.write(wire) for v in values] for name, values in parts.items()},
        }
        return cbor.encode({**wire.object(ProofBundle.FIELDS, tree), ProofBundle.CBOR_PROOF_HASHES: table.hashes})
    except (BundleFormatError, TypeError, ValueError):  # ValueError: a float (version 2.0), which CBOR lacks
        return None


def refused_bundle_cases() -> list[tuple[Path, bytes]]:
    out = []
    for path in CASES:
        case = load(path)
        if case["expected"]["failed_step"] != "bundle_format":
            continue
        twin = cbor_twin(_bundle_document(case))
        if twin is not None:
            out.append((path, twin))
    return out


PARSED = parsed_bundle_cases()
REFUSED = refused_bundle_cases()
VALID_READING = next(b for p, b in PARSED if p.stem == "valid-reading")
VALID_CASE = load(next(p for p in CASES if p.stem == "valid-reading"))


def verdict(blob: bytes, case: dict[str, Any] = VALID_CASE) -> tuple[str, str | None, int]:
    report = verify_bundle_cbor(blob, RecordedChain.from_json(case["chain"]), Trust.from_json(case["trust"]))
    return report.status, report.failed_step, report.exit_code


def test_every_parsing_bundle_case_is_converted() -> None:
    assert len(PARSED) >= 50
    assert {"valid-reading", "valid-aggregate", "pending", "incomplete", "empty"} <= {p.stem for p, _ in PARSED}


@pytest.mark.parametrize(("path", "bundle"), PARSED, ids=[p.stem for p, _ in PARSED])
def test_conformance_case_in_cbor(path: Path, bundle: ProofBundle) -> None:
    case = load(path)
    if path.stem in NO_CBOR_FORM:
        with pytest.raises(BundleFormatError, match="no CBOR form"):
            bundle.to_cbor()
        return
    blob = bundle.to_cbor()
    assert same_json(ProofBundle.from_cbor(blob).to_json(), bundle.to_json())  # exact JSON types survive
    expected = case["expected"]
    assert verdict(blob, case) == (expected["status"], expected["failed_step"], expected["exit_code"])


def test_bundles_refused_as_a_whole_have_twins() -> None:
    assert {p.stem for p, _ in REFUSED} >= {
        "tamper-a-batch-listed-twice",
        "tamper-an-unused-key-listed",
        "tamper-an-unused-checkpoint-listed",
        "tamper-device-key-listed-as-a-gateway-key",
        "tamper-device-key-reference",
        "tamper-format-version",
    }


@pytest.mark.parametrize(("path", "twin"), REFUSED, ids=[p.stem for p, _ in REFUSED])
def test_conformance_case_refused_alike_in_cbor(path: Path, twin: bytes) -> None:
    """Refused at bundle_format, and for the very reason the JSON document is (the same check, not a CBOR one)."""
    case = load(path)
    chain, trust = RecordedChain.from_json(case["chain"]), Trust.from_json(case["trust"])
    from_json = verify_bundle_json(_bundle_document(case), chain, trust)
    from_cbor = verify_bundle_cbor(twin, chain, trust)
    assert (from_cbor.status, from_cbor.failed_step, from_cbor.exit_code) == BUNDLE_FORMAT
    assert from_cbor.detail == from_json.detail


# ---- read as strictly as JSON ----------------------------------------------------------------------------


def _tree(bundle: ProofBundle = VALID_READING) -> dict[Any, Any]:
    tree: dict[Any, Any] = cbor.decode(bundle.to_cbor())
    return tree


def _pairs(tree: dict[Any, Any]) -> list[bytes]:
    return sorted(cbor.encode(k) + cbor.encode(v) for k, v in tree.items())


def test_the_canonical_encoding_is_valid_and_half_the_json() -> None:
    blob = VALID_READING.to_cbor()
    assert verdict(blob) == ("valid", None, 0)
    assert bundle_wire.looks_like_cbor(blob)
    assert len(blob) < len(strict_json.canonical(VALID_READING.to_json())) / 2


@pytest.mark.parametrize(
    "reencode",
    [
        # a longer integer head: version 3 written in two bytes
        lambda: VALID_READING.to_cbor().replace(
            b"carbontrace-proof-bundle\x01\x03", b"carbontrace-proof-bundle\x01\x18\x03"
        ),
        # the top-level map's keys in descending order
        lambda: bytes([0xAA]) + b"".join(reversed(_pairs(_tree()))),
        # an indefinite-length map
        lambda: b"\xbf" + b"".join(_pairs(_tree())) + b"\xff",
        # a byte string's length in a longer head than it needs (the leaf: 1-byte length written in 2)
        lambda: VALID_READING.to_cbor().replace(
            bytes([0x58, len(VALID_READING.items[0].leaf)]) + VALID_READING.items[0].leaf,
            bytes([0x59, 0, len(VALID_READING.items[0].leaf)]) + VALID_READING.items[0].leaf,
        ),
        lambda: VALID_READING.to_cbor() + b"\x00",  # trailing bytes
        lambda: VALID_READING.to_cbor()[:-1],  # truncated
    ],
    ids=["longer-integer", "unsorted-keys", "indefinite-length", "longer-length", "trailing-byte", "truncated"],
)
def test_a_non_canonical_encoding_is_bundle_format(reencode: Any) -> None:
    blob = reencode()
    assert blob != VALID_READING.to_cbor()
    assert verdict(blob) == BUNDLE_FORMAT


def _edited(edit: Any) -> bytes:
    tree = _tree()
    edit(tree)
    return cbor.encode(tree)


def _one_table_entry_twice(t: dict[Any, Any]) -> None:
    """The first proof's first hash appended to the table again, and that proof pointing at the copy."""
    batch_proof = t[8][0][6]
    t[10] = [*t[10], t[10][batch_proof[0]]]
    batch_proof[0] = len(t[10]) - 1


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.pop(10),  # no table
        lambda t: t.update({10: list(reversed(t[10]))}),  # out of order
        _one_table_entry_twice,  # a hash twice (unsorted too: the copy is last)
        lambda t: t.update({10: sorted([*t[10], bytes(32)])}),  # an entry no proof uses
        lambda t: t[8][0][6].__setitem__(0, len(t[10])),  # an index past the end
        lambda t: t[8][0][6].__setitem__(0, -1),  # a negative index
        lambda t: t[8][0][6].__setitem__(0, True) if t[8][0][6][0] == 1 else t[8][0][6].__setitem__(0, False),
        lambda t: t[8][0].update({6: [t[10][i] for i in t[8][0][6]]}),  # a proof written out as hashes
        lambda t: t.update({10: [*t[10][:-1], t[10][-1][:31]]}),  # a hash of 31 bytes
    ],
    ids=["no-table", "unsorted", "hash-twice", "unused-entry", "index-past-end", "negative-index", "bool-index",
         "hashes-not-indices", "short-hash"],
)
def test_the_proof_hash_table_is_exact(edit: Any) -> None:
    """One CBOR encoding per bundle: the table holds each hash of its proofs once, in order, all used, and proofs
    are indices into it; anything else is bundle_format."""
    tree = _tree()
    assert isinstance(tree[10], list) and len(tree[10]) > 2 and tree[8][0][6]
    blob = _edited(edit)
    assert blob != VALID_READING.to_cbor()
    assert verdict(blob) == BUNDLE_FORMAT


def test_proofs_that_share_a_node_write_it_once() -> None:
    """The valid reading's checkpoint proofs and log proof share nodes; the table holds each once, and the bundle
    read back has every proof as it was."""
    proofs = VALID_READING.proofs()
    table = ProofHashTable.of(proofs)
    assert len(table.hashes) == len({h for p in proofs for h in p})
    assert ProofBundle.from_cbor(VALID_READING.to_cbor()).proofs() == proofs


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.update({"format": t.pop(0)}),  # a field named instead of keyed
        lambda t: t.update({11: 1}),  # an unknown key
        lambda t: t.pop(9),  # a missing key
        lambda t: t.update({1: True}),  # true for the version
        lambda t: t[8][0].update({5: t[8][0][5].hex()}),  # the leaf as hex text, not a byte string
        lambda t: t[2].update({1: t[2][1][:19]}),  # a registry address of 19 bytes
        lambda t: t[8][0][7].update({"flags": b"\x00"}),  # a byte string in the view
        lambda t: t[8][0][7].update({1: 0}),  # an integer key in the view
        lambda t: t[8][0][7].update({"seq": cbor.Tag(4, [0, 1])}),  # a tag in the view
        lambda t: t[5][0].update({2: t[5][0][2][:-1]}),  # a public key one byte short
        lambda t: t.update({True: t.pop(1)}),  # the key `true` for key 1 (Python: True == 1)
        lambda t: t[8][0].update({False: t[8][0].pop(0)}),  # an item's key `false` for key 0
    ],
    ids=[
        "text-key",
        "unknown-key",
        "missing-key",
        "true-for-version",
        "hex-for-bytes",
        "short-address",
        "bytes-in-view",
        "integer-key-in-view",
        "tag-in-view",
        "short-public-key",
        "true-for-key-1",
        "false-for-key-0",
    ],
)
def test_cbor_fields_and_types_are_exact(edit: Any) -> None:
    assert verdict(_edited(edit)) == BUNDLE_FORMAT


def test_a_float_in_a_view_is_bundle_format() -> None:
    """CBOR has no floats in our profile: the float that fails JSON's decoded_view is refused at bundle_format."""
    marker = 0x5EED5EED
    blob = _edited(lambda t: t[8][0][7].update({"co2_ppm": marker}))
    floated = blob.replace(b"\x1a" + marker.to_bytes(4, "big"), b"\xfb" + struct.pack(">d", 600.0))
    assert floated != blob
    assert verdict(floated) == BUNDLE_FORMAT


def test_the_docs_list_every_cbor_key() -> None:
    """docs/proof-bundle.md's key table is the field tuples' order (a field's key is its position)."""
    text = (Path(REPO_ROOT) / "docs" / "proof-bundle.md").read_text()
    parts = (ProofBundle, Query, NewestAnchor, KeyEntry, CheckpointEntry, BatchEntry, ItemEntry, RetrievalFailure)
    for fields in (*(p.FIELDS + getattr(p, "OPTIONAL", ()) for p in parts), ProofBundle.CHAIN_FIELDS):
        row = ", ".join(f"{key} `{name}`" for key, name in enumerate(fields))
        assert f"| {row} |" in text, row
    assert "| bundle, CBOR only | 10 `proof_hashes` |" in text
    # 11 keys: the fields and the proof hash table
    assert VALID_READING.to_cbor().startswith(bytes.fromhex("ab007818") + b"carbontrace-proof-bundle\x01\x03")


def test_json_text_is_never_taken_for_cbor() -> None:
    for text in (b'{"format": 1}', b" {}", b"\xef\xbb\xbf{}", b"[]", b""):
        assert not bundle_wire.looks_like_cbor(text)


# ---- size ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large() -> bundle_size.SizedBundle:
    return bundle_size.build(BUNDLE_LOG_LEAVES)


def test_one_reading_at_ten_million_log_leaves_verifies_and_is_half_the_json(large: bundle_size.SizedBundle) -> None:
    blob = large.bundle.to_cbor()
    assert verify_bundle_cbor(blob, large.chain, bundle_size.TRUST).status == "valid"
    lengths = large.proof_lengths()
    assert lengths["batch"] == 7 and 16 <= lengths["log"] <= 24, lengths  # 10^7 leaves: about 2^23
    assert lengths["consistency to newest"] >= 20, lengths
    assert len(blob) <= 3_600 and len(blob) < large.json_bytes() / 2
    # what the bytes are: proof hashes most, then the three signed objects; the rest (ids, view, keys) is small
    breakdown = bundle_size.cbor_breakdown(large.bundle)
    assert breakdown["proof hashes"] > len(blob) / 2 and breakdown["everything else"] < 600, breakdown


def test_one_reading_at_ten_million_log_leaves_fits_3_kib(large: bundle_size.SizedBundle) -> None:
    """Issue 14's target. It holds because a proof hash shared by two proofs is written once (the hash table):
    with each proof's hashes written out, this bundle was 3,469 bytes."""
    assert large.cbor_bytes() <= CBOR_TARGET_BYTES
    proofs = large.bundle.proofs()
    written_out = sum(len(p) for p in proofs)
    assert len(ProofHashTable.of(proofs).hashes) < written_out  # what the table saves: shared nodes


# ---- the route -------------------------------------------------------------------------------------------


def test_trace_bundle_in_cbor(sqlite_client: TestClient) -> None:
    client = sqlite_client
    traced = tenant_with_batches(client, "Cbor Co", batches=1)
    anchor(client)
    key, reading = traced.tenant.enterprise_key, traced.readings[0]
    params = {"device_id": reading.device_id, "start": reading.timestamp, "end": reading.timestamp + 1, "types": "co2"}
    as_json = get(client, "/api/v1/trace/bundle", key, **params)
    by_param = get(client, "/api/v1/trace/bundle", key, encoding="cbor", **params)
    by_accept = client.get("/api/v1/trace/bundle", params=params, headers={**auth(key), "Accept": "application/cbor"})
    assert as_json.headers["content-type"].startswith("application/json")
    for r in (by_param, by_accept):
        assert r.status_code == 200 and r.headers["content-type"] == "application/cbor", r.text
        assert 'filename="carbontrace-bundle.cbor"' in r.headers["content-disposition"]
        assert same_json(ProofBundle.from_cbor(r.content).to_json(), as_json.json())
        assert verify_bundle_cbor(r.content, reader_of(client), trust_of(client)).status == "valid"
    explicit_json = client.get(
        "/api/v1/trace/bundle",
        params={**params, "encoding": "json"},
        headers={**auth(key), "Accept": "application/cbor"},
    )
    assert explicit_json.headers["content-type"].startswith("application/json")  # the parameter decides
