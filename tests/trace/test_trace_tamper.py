"""Tamper matrix: one changed byte in every stored place and in every part of a bundle is caught, at its step.

Stored places (SQL reading row, content-store blob, a log proof node, the device/gateway/checkpoint
signatures, the device and gateway key tables) are changed under a running app, traced through the API, then restored
and traced again (valid), so each case also shows the detection is not spurious. Rewriting anchored history
is caught by the consistency check against the chain.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol import cose, merkle, sealed_blob
from carbontrace_protocol.batch import Batch, reading_leaf
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.measures import FIELD_BITS, measures_of
from carbontrace_protocol.proof_bundle import Trust
from carbontrace_protocol.proof_verify import EXIT_EMPTY, EXIT_INCOMPLETE, STEP_EXIT
from carbontrace_protocol.proof_verify import verify_bundle_json as verify_bundle
from cloud import models
from cloud.ledger import Ledger
from cloud.ledger_log import SqlLog
from tests.cloud.cloud_testkit import auth, new_key
from tests.trace.trace_kit import (
    Traced,
    anchor,
    get,
    ledger_of,
    reader_of,
    tenant_with_batches,
    trust_of,
    upload_batches,
)


def flip_hex(text: str, position: int = -1) -> str:
    """The hex string with one byte changed (the nibble at ``position`` xor 1)."""
    chars = list(text)
    chars[position] = format(int(chars[position], 16) ^ 1, "x")
    return "".join(chars)


def flip(data: bytes, position: int = -1) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _first_item(client: TestClient, traced: Traced) -> dict[str, Any]:
    device = traced.tenant.gateway.devices[0].device_id
    r = get(client, "/api/v1/trace/verify", traced.tenant.enterprise_key, device_id=device, types="co2", limit=1)
    assert r.status_code == 200, r.text
    return r.json()["items"][0]  # type: ignore[no-any-return]


def _readdress(
    ledger: Ledger, batch_id: str, blob: bytes, signed_header: bytes | None = None, sealed: bytes | None = None
) -> None:
    """An attacker with the DB and the store: put a changed blob under its own CID and point the index at it.
    The cloud's encryption key is public, so the attacker seals the changed batch to it (or passes ``sealed``)."""
    blob = sealed if sealed is not None else sealed_blob.seal(blob, batch_id, [ledger.sealer.public_key])
    cid, _ = ledger.store.put(blob)
    with ledger.session_factory.begin() as session:
        if session.get(models.Blob, cid) is None:
            session.add(models.Blob(cid=cid, size=len(blob), kind="batch", pinned=True, created_at=0))
            session.flush()
        row = session.get(models.Batch, batch_id)
        assert row is not None
        row.cid = cid
        if signed_header is not None:
            row.signed_header = signed_header


def _key_entry(bundle: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    return next(k for k in bundle["keys"] if key_fingerprint(bytes.fromhex(k["public_key"])).hex() == fingerprint)


def _swap_key(bundle: dict[str, Any], fingerprint: str, public_key: bytes) -> str:
    """Replace a listed key by another one, references updated (so only the chain can tell)."""
    _key_entry(bundle, fingerprint)["public_key"] = public_key.hex()
    new = key_fingerprint(public_key).hex()
    for batch in bundle["batches"]:
        if batch["gateway_key"] == fingerprint:
            batch["gateway_key"] = new
    for item in bundle["items"]:
        if item["device_key"] == fingerprint:
            item["device_key"] = new
    return new


def _swap_cloud_key(bundle: dict[str, Any]) -> None:
    cloud = next(k for k in bundle["keys"] if k["kind"] == "cloud")
    cloud["public_key"] = _other_key_hex()


def _resign_header_with_a_rogue_key(bundle: dict[str, Any]) -> None:
    """A bundle whose header signature verifies under the key it carries, which is not the gateway's on chain."""
    batch = bundle["batches"][0]
    rogue_private, rogue_public = new_key()
    message = cose.parse_sign1(bytes.fromhex(batch["signed_header"]))
    batch["signed_header"] = cose.sign1(rogue_private, bytes(message.kid), bytes(message.payload)).hex()
    _swap_key(bundle, batch["gateway_key"], rogue_public)


class StoreCase:
    def __init__(self, name: str, step: str, tamper: Callable[[], Callable[[], None]]) -> None:
        self.name, self.step, self.tamper = name, step, tamper


def test_stored_tamper_matrix(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Tamper", batches=3)
    anchor(client)
    ledger = ledger_of(client)
    batch = traced.batches[0]
    first = traced.readings[0]
    with ledger.read_session_factory() as session:
        batch_row = session.get(models.Batch, batch.id)
        assert batch_row is not None
        original_cid, original_header = batch_row.cid, batch_row.signed_header
        device_row = session.get(models.Device, first.device_id)
        assert device_row is not None
        original_key = device_row.public_key
        gateway_row = session.get(models.Gateway, traced.tenant.gateway.gateway_id)
        assert gateway_row is not None
        original_gateway_key = gateway_row.public_key
        checkpoint_row = session.get(models.Checkpoint, 0)
        assert checkpoint_row is not None
        original_checkpoint = checkpoint_row.signed
        original_node = session.get(models.LogNode, (0, 1))
        assert original_node is not None
        node_hash = original_node.hash

    def set_rows(model: Any, where: Any, **values: Any) -> None:
        with ledger.session_factory.begin() as session:
            session.execute(update(model).where(where).values(**values))

    def sql_reading_row() -> Callable[[], None]:
        where = (models.Reading.device_id == first.device_id) & (models.Reading.seq == first.seq)
        # SQL holds no values, only which measurements: claim one more (a bit no field has, so it still matches)
        set_rows(models.Reading, where, measures=measures_of(first) | 1 << len(FIELD_BITS))
        return lambda: set_rows(models.Reading, where, measures=measures_of(first))

    def blob_byte() -> Callable[[], None]:
        path = ledger.store.local._path(original_cid)
        data = path.read_bytes()
        start, end = sealed_blob.ciphertext_span(data)
        path.write_bytes(flip(data, (start + end) // 2))  # a byte of the ciphertext: the CID check fails
        return lambda: path.write_bytes(data)

    def sealed_ciphertext() -> Callable[[], None]:
        # the changed ciphertext under its own CID: the CID holds, the cloud's key does not open it
        data = ledger.store.local._path(original_cid).read_bytes()
        start, end = sealed_blob.ciphertext_span(data)
        _readdress(ledger, batch.id, b"", sealed=flip(data, (start + end) // 2))
        return back_to_original

    def sealed_to_others() -> Callable[[], None]:
        # a well-formed blob of the right batch that the cloud is not a recipient of
        _readdress(ledger, batch.id, b"", sealed=sealed_blob.seal(batch.encode(), batch.id, [new_key()[1]]))
        return back_to_original

    def log_node() -> Callable[[], None]:
        where = (models.LogNode.level == 0) & (models.LogNode.index == 1)
        set_rows(models.LogNode, where, hash=flip(node_hash))
        return lambda: set_rows(models.LogNode, where, hash=node_hash)

    def back_to_original() -> None:
        set_rows(models.Batch, models.Batch.id == batch.id, cid=original_cid, signed_header=original_header)

    def device_signature() -> Callable[[], None]:
        leaves = list(batch.leaves)
        leaves[0] = flip(leaves[0])  # the last byte of a reading leaf is its signature's
        _readdress(ledger, batch.id, Batch(batch.signed_header, batch.header, leaves).encode())
        return back_to_original

    def gateway_signature() -> Callable[[], None]:
        header = flip(batch.signed_header)
        _readdress(ledger, batch.id, Batch(header, batch.header, batch.leaves).encode(), header)
        return back_to_original

    def checkpoint_signature() -> Callable[[], None]:
        set_rows(models.Checkpoint, models.Checkpoint.seq == 0, signed=flip(original_checkpoint))
        return lambda: set_rows(models.Checkpoint, models.Checkpoint.seq == 0, signed=original_checkpoint)

    def device_key_table() -> Callable[[], None]:
        # the key history is what a bundle names keys from: an insider swaps the device's key there
        rogue = new_key()[1]
        where = (models.SignerKey.kind == "device") & (models.SignerKey.signer_id == first.device_id)
        set_rows(models.SignerKey, where, public_key=rogue, fingerprint=key_fingerprint(rogue))
        return lambda: set_rows(
            models.SignerKey, where, public_key=original_key, fingerprint=key_fingerprint(original_key)
        )

    def gateway_key_table() -> Callable[[], None]:
        # an insider swaps the gateway's key for their own and re-signs the header: the signature holds, but
        # only the chain says which key is the gateway's
        rogue_private, rogue_public = new_key()
        gateway_id = traced.tenant.gateway.gateway_id
        header = cose.sign1(rogue_private, gateway_id.encode(), bytes(cose.parse_sign1(batch.signed_header).payload))
        _readdress(ledger, batch.id, Batch(header, batch.header, batch.leaves).encode(), header)
        set_rows(models.Gateway, models.Gateway.id == gateway_id, public_key=rogue_public)

        def restore() -> None:
            back_to_original()
            set_rows(models.Gateway, models.Gateway.id == gateway_id, public_key=original_gateway_key)

        return restore

    cases = [
        StoreCase("SQL reading row", "sql_index", sql_reading_row),
        StoreCase("content-store blob (a ciphertext byte)", "content_store", blob_byte),
        StoreCase("sealed ciphertext (blob re-addressed)", "content_store", sealed_ciphertext),
        StoreCase("sealed to other readers (blob re-addressed)", "content_store", sealed_to_others),
        StoreCase("log proof node", "log_inclusion", log_node),
        StoreCase("device signature (blob re-addressed)", "device_signature", device_signature),
        StoreCase("gateway signature (blob and index re-addressed)", "gateway_signature", gateway_signature),
        StoreCase("checkpoint signature", "checkpoint_signature", checkpoint_signature),
        StoreCase("device key table", "device_key", device_key_table),
        StoreCase("gateway key table (header re-signed with the new key)", "gateway_signature", gateway_key_table),
    ]
    assert _first_item(client, traced)["status"] == "valid"
    for case in cases:
        restore = case.tamper()
        item = _first_item(client, traced)
        assert (item["status"], item["failed_step"]) == ("invalid", case.step), (case.name, item)
        restore()
        assert _first_item(client, traced)["status"] == "valid", case.name


def _items_by_batch(client: TestClient, traced: Traced, device: str) -> dict[str, dict[str, Any]]:
    r = get(client, "/api/v1/trace/verify", traced.tenant.enterprise_key, device_id=device, types="co2")
    assert r.status_code == 200, r.text
    return {item["batch_id"]: item for item in r.json()["items"]}


def test_revoking_a_device_key_keeps_what_was_anchored_before_and_voids_what_comes_after(client: TestClient) -> None:
    """Key validity runs from a point in the log: a batch anchored while the key was active stays valid after
    the revocation (decommissioning does not void history); one anchored after it fails at device_key."""
    traced = tenant_with_batches(client, "Revoked Device", batches=1)
    anchor(client)
    upload_batches(client, traced, 1)  # uploaded while the key is active, anchored only after the revocation
    device = traced.tenant.gateway.devices[0].device_id
    before, after = traced.batches[0].id, traced.batches[1].id
    assert _items_by_batch(client, traced, device)[after]["status"] == "pending"
    r = client.post(f"/api/v1/devices/{device}/revoke", headers=auth(traced.tenant.engineer_key))
    assert r.status_code == 200, r.text
    items = _items_by_batch(client, traced, device)
    assert items[before]["status"] == "valid", items[before]
    assert (items[after]["status"], items[after]["failed_step"]) == ("invalid", "device_key"), items[after]
    anchor(client)
    items = _items_by_batch(client, traced, device)
    assert items[before]["status"] == "valid", items[before]
    failed = [step for step in items[after]["steps"] if step["ok"] is False]
    assert items[after]["failed_step"] == "device_key" and "revoked at checkpoint 1" in failed[0]["detail"], failed


def test_revoking_a_gateway_key_keeps_its_anchored_batches_and_voids_later_ones(client: TestClient) -> None:
    traced = tenant_with_batches(client, "Revoked Gateway", batches=1)
    anchor(client)
    upload_batches(client, traced, 1)
    device = traced.tenant.gateway.devices[0].device_id
    before, after = traced.batches[0].id, traced.batches[1].id
    gateway = traced.tenant.gateway.gateway_id
    r = client.post(f"/api/v1/gateways/{gateway}/revoke", headers=auth(traced.tenant.engineer_key))
    assert r.status_code == 200, r.text
    anchor(client)
    items = _items_by_batch(client, traced, device)
    assert items[before]["status"] == "valid", items[before]
    failed = [step for step in items[after]["steps"] if step["ok"] is False]
    assert items[after]["failed_step"] == "gateway_signature" and "revoked" in failed[0]["detail"], items[after]


def test_rewritten_history_is_caught_by_consistency(sqlite_client: TestClient) -> None:
    """Replace an anchored batch's log leaf and re-append the log, then anchor the forged log: every new
    checkpoint verifies alone, but it is not an extension of what the chain already holds."""
    client = sqlite_client
    traced = tenant_with_batches(client, "Rewrite", batches=2)
    anchor(client)
    ledger = ledger_of(client)
    forged = [reading_leaf(b"forged batch header"), traced.batches[1].signed_header]
    with ledger.session_factory.begin() as session:
        session.execute(delete(models.LogNode))
        session.execute(update(models.LogState).values(size=0))
        log = SqlLog(session)
        for leaf in forged:
            log.append(leaf)
    upload_batches(client, traced, 1)
    anchor(client)  # the forger holds the cloud key: checkpoint 1 is signed and anchored
    device = traced.tenant.gateway.devices[0].device_id
    r = get(client, "/api/v1/trace/verify", traced.tenant.enterprise_key, device_id=device, types="co2")
    items = r.json()["items"]
    by_batch = {i["batch_id"]: i for i in items}
    newest = by_batch[traced.batches[2].id]
    assert (newest["status"], newest["failed_step"]) == ("invalid", "consistency"), newest
    assert {s["step"]: s["ok"] for s in newest["steps"]}["chain_anchor"] is True
    rewritten = by_batch[traced.batches[0].id]
    # Its own audit path (the untouched sibling) still reaches the old anchored root; the forged log is not
    # an extension of that root, and the consistency proof to the newest anchor says so.
    assert rewritten["failed_step"] == "consistency", rewritten


BundleMutation = Callable[[dict[str, Any]], None]


def _rename_batch(bundle: dict[str, Any]) -> None:
    renamed = bundle["batches"][0]["batch_id"] + "0"
    bundle["batches"][0]["batch_id"] = renamed
    bundle["items"][0]["batch_id"] = renamed


def _retype_view(bundle: dict[str, Any], name: str, kind: type) -> None:
    """The same value as Python's == sees it (674 == 674.0, 0 == False), another JSON type."""
    view = bundle["items"][0]["view"]
    assert name in view, view
    view[name] = kind(view[name])


def _other_key_hex() -> str:
    return new_key()[1].hex()


def _resign_checkpoint_as_newest(bundle: dict[str, Any]) -> None:
    bundle["batches"][0]["checkpoint_seq"] = 2
    bundle["checkpoints"][0]["seq"] = 2


BUNDLE_CASES: list[tuple[str, str, BundleMutation]] = [
    ("format version", "bundle_format", lambda b: b.__setitem__("version", 1)),
    ("format version 2 (before openings)", "bundle_format", lambda b: b.__setitem__("version", 2)),
    ("opening on a reading", "bundle_format", lambda b: b["items"][0]["openings"].__setitem__("co2_ppm", "00")),
    ("openings not an object", "bundle_format", lambda b: b["items"][0].__setitem__("openings", [])),
    ("chain id", "chain_identity", lambda b: b["chain"].__setitem__("chain_id", b["chain"]["chain_id"] + 1)),
    ("contract address", "chain_identity", lambda b: b["chain"].__setitem__("registry", "0x" + "11" * 20)),
    (
        "device public key (references updated)",
        "device_key",
        lambda b: _swap_key(b, b["items"][0]["device_key"], new_key()[1]),
    ),
    (
        "device key reference",
        "bundle_format",
        lambda b: b["items"][0].__setitem__("device_key", flip_hex(b["items"][0]["device_key"])),
    ),
    (
        "device key listed as a gateway key",
        "bundle_format",
        lambda b: _key_entry(b, b["items"][0]["device_key"]).__setitem__("kind", "gateway"),
    ),
    (
        "device key of another device",
        "device_key",
        lambda b: _key_entry(b, b["items"][0]["device_key"]).__setitem__("signer", "dev-other"),
    ),
    (
        "an unused key listed",
        "bundle_format",
        lambda b: b["keys"].append({"kind": "device", "signer": "dev-x", "public_key": _other_key_hex()}),
    ),
    ("a batch listed twice", "bundle_format", lambda b: b["batches"].append(copy.deepcopy(b["batches"][0]))),
    (
        "an unused checkpoint listed",
        "bundle_format",
        lambda b: b["checkpoints"].append(copy.deepcopy(b["checkpoints"][0]) | {"seq": 0}),
    ),
    ("hex written with 0x", "bundle_format", lambda b: b["items"][0].__setitem__("leaf", "0x" + b["items"][0]["leaf"])),
    (
        "leaf (signature byte)",
        "device_signature",
        lambda b: b["items"][0].__setitem__("leaf", flip_hex(b["items"][0]["leaf"])),
    ),
    (
        "leaf (payload byte)",
        "device_signature",
        lambda b: b["items"][0].__setitem__("leaf", flip_hex(b["items"][0]["leaf"], 60)),
    ),
    ("decoded view", "decoded_view", lambda b: b["items"][0]["view"].__setitem__("co2_ppm", 1)),
    (
        "batch proof element",
        "batch_inclusion",
        lambda b: b["items"][0]["batch_proof"].__setitem__(0, flip_hex(b["items"][0]["batch_proof"][0])),
    ),
    ("leaf index", "batch_inclusion", lambda b: b["items"][0].__setitem__("leaf_index", 1)),
    (
        "batch header root",
        "batch_inclusion",
        lambda b: b["batches"][0].__setitem__("signed_header", flip_hex(b["batches"][0]["signed_header"], -200)),
    ),
    (
        "gateway signature",
        "gateway_signature",
        lambda b: b["batches"][0].__setitem__("signed_header", flip_hex(b["batches"][0]["signed_header"])),
    ),
    (
        "gateway public key (references updated)",
        "gateway_signature",
        lambda b: _swap_key(b, b["batches"][0]["gateway_key"], new_key()[1]),
    ),
    (
        "checkpoint signature",
        "checkpoint_signature",
        lambda b: b["checkpoints"][0].__setitem__("signed", flip_hex(b["checkpoints"][0]["signed"])),
    ),
    (
        "gateway key and header re-signed with it",
        "gateway_signature",
        _resign_header_with_a_rogue_key,
    ),
    ("cloud public key", "checkpoint_signature", _swap_cloud_key),
    ("log index", "log_inclusion", lambda b: b["batches"][0].__setitem__("log_index", 0)),
    (
        "log proof element",
        "log_inclusion",
        lambda b: b["batches"][0]["log_proof"].__setitem__(0, flip_hex(b["batches"][0]["log_proof"][0])),
    ),
    ("checkpoint index to read", "chain_anchor", _resign_checkpoint_as_newest),
    (
        "consistency from previous",
        "consistency",
        lambda b: b["checkpoints"][0]["consistency_from_previous"].__setitem__(
            0, flip_hex(b["checkpoints"][0]["consistency_from_previous"][0])
        ),
    ),
    (
        "consistency to newest",
        "consistency",
        lambda b: b["checkpoints"][0]["consistency_to_newest"].__setitem__(
            0, flip_hex(b["checkpoints"][0]["consistency_to_newest"][0])
        ),
    ),
    ("newest root", "consistency", lambda b: b["newest"].__setitem__("root", flip_hex(b["newest"]["root"]))),
    # Fields that were once carried but never checked: each is now checked, or not in the bundle at all.
    ("checkpoint cid", "chain_anchor", lambda b: b["checkpoints"][0].__setitem__("cid", "bafkrei" + "a" * 52)),
    (
        "checkpoint tx_hash (not in the format)",
        "bundle_format",
        lambda b: b["checkpoints"][0].__setitem__("tx_hash", "0x" + "ab" * 32),
    ),
    (
        "batch cid (not in the format)",
        "bundle_format",
        lambda b: b["batches"][0].__setitem__("cid", "bafkrei" + "a" * 52),
    ),
    ("created (not in the format)", "bundle_format", lambda b: b.__setitem__("created", 1)),
    ("batch id", "batch_inclusion", _rename_batch),
    ("view integer written as a float", "decoded_view", lambda b: _retype_view(b, "co2_ppm", float)),
    ("view flag 0 written as false", "decoded_view", lambda b: _retype_view(b, "flags", bool)),
    ("item names another device", "device_key", lambda b: b["items"][0].__setitem__("device_id", "dev-other")),
    ("query relabelled: device", "query_match", lambda b: b["query"].__setitem__("device_id", "dev-other")),
    (
        "query relabelled: enterprise",
        "query_match",
        lambda b: b["query"].__setitem__("enterprise_id", "other-enterprise"),
    ),
    (
        "query relabelled: period",
        "query_match",
        lambda b: b["query"].update(start=b["query"]["end"], end=b["query"]["end"] + 60),
    ),
    ("query relabelled: site", "query_match", lambda b: b["query"].__setitem__("site_id", "site-other")),
    ("query limit below the answer", "bundle_format", lambda b: b["query"].__setitem__("limit", 0)),
    (
        "registry written in mixed case",
        "bundle_format",
        lambda b: b["chain"].__setitem__("registry", b["chain"]["registry"].upper().replace("0X", "0x")),
    ),
]


@pytest.fixture(scope="module")
def one_reading_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A one-reading bundle under checkpoint 1 of 3 (so both consistency proofs are non-empty), with its app."""
    from tests.cloud.cloud_testkit import app_client, make_settings

    tmp: Path = tmp_path_factory.mktemp("bundle")
    with app_client(make_settings(tmp)) as client:
        traced = tenant_with_batches(client, "Bundle", batches=2, devices=1)
        anchor(client)
        upload_batches(client, traced, 1, per_device=6)
        anchor(client)
        upload_batches(client, traced, 1)
        anchor(client)
        reading = traced.readings[4]
        r = get(
            client,
            "/api/v1/trace/bundle",
            traced.tenant.enterprise_key,
            device_id=reading.device_id,
            start=reading.timestamp,
            end=reading.timestamp + 1,
            types="co2",
        )
        bundle = r.json()
        assert len(bundle["items"]) == 1 and bundle["batches"][0]["checkpoint_seq"] == 1, bundle
        yield client, bundle


def test_bundle_is_valid(one_reading_bundle: Any) -> None:
    client, bundle = one_reading_bundle
    report = verify_bundle(bundle, reader_of(client), trust_of(client))
    assert (report.status, report.exit_code) == ("valid", 0), report.as_json()
    assert all(len(bundle["checkpoints"][0][k]) > 0 for k in ("consistency_from_previous", "consistency_to_newest"))


@pytest.mark.parametrize(("name", "step", "mutate"), BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_bundle_tamper_matrix(one_reading_bundle: Any, name: str, step: str, mutate: BundleMutation) -> None:
    client, bundle = one_reading_bundle
    tampered = copy.deepcopy(bundle)
    mutate(tampered)
    assert json.dumps(tampered, sort_keys=True) != json.dumps(bundle, sort_keys=True)  # 674.0 == 674 in Python
    report = verify_bundle(tampered, reader_of(client, tampered), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", step), (name, report.as_json())
    assert report.exit_code == STEP_EXIT[step]


def test_forged_checkpoint_signed_with_the_cloud_key_is_caught_on_chain(one_reading_bundle: Any) -> None:
    """An insider with the cloud key signs a checkpoint of another log: signature fine, chain says no."""
    client, bundle = one_reading_bundle
    ledger = ledger_of(client)
    tampered = copy.deepcopy(bundle)
    header = bytes.fromhex(bundle["batches"][0]["signed_header"])
    leaf = merkle.leaf_hash(header)
    size = 3
    proof = [merkle.leaf_hash(b"other %d" % i) for i in range(2)]
    # A log of 3 where our leaf sits at index 2 next to two other leaves: its own root, its own proof.
    root = merkle.node_hash(merkle.node_hash(proof[0], proof[1]), leaf)
    kid = signed_checkpoint.parse(bytes.fromhex(bundle["checkpoints"][0]["signed"])).key_fingerprint
    signed = signed_checkpoint.sign(ledger.signing_key, kid, size, root, 1)
    tampered["checkpoints"][0]["signed"] = bytes(signed).hex()
    tampered["batches"][0]["log_proof"] = [merkle.node_hash(proof[0], proof[1]).hex()]
    report = verify_bundle(tampered, reader_of(client, tampered), trust_of(client))
    assert report.failed_step == "chain_anchor", report.as_json()


def test_a_bundle_pinned_to_another_registry_fails_even_if_that_registry_answers(one_reading_bundle: Any) -> None:
    """A copy of the registry deployed by anyone: the bundle names it, the reader reads it, the trust says no."""
    client, bundle = one_reading_bundle
    report = verify_bundle(bundle, reader_of(client), Trust(trust_of(client).chain_id, "0x" + "22" * 20))
    assert (report.status, report.failed_step) == ("invalid", "chain_identity"), report.as_json()
    report = verify_bundle(bundle, reader_of(client), Trust(trust_of(client).chain_id + 1, trust_of(client).registry))
    assert (report.status, report.failed_step) == ("invalid", "chain_identity"), report.as_json()


def test_retrieval_failures_make_an_answer_incomplete_not_valid(one_reading_bundle: Any) -> None:
    client, bundle = one_reading_bundle
    tampered = copy.deepcopy(bundle)
    item = tampered["items"][0]
    failure = {k: item[k] for k in ("kind", "batch_id", "device_id")} | {
        "leaf_index": 0,
        "failed_step": "content_store",
    }
    tampered["retrieval_failures"] = [failure]
    report = verify_bundle(tampered, reader_of(client), trust_of(client))
    assert (report.status, report.exit_code) == ("incomplete", EXIT_INCOMPLETE), report.as_json()


def test_an_answer_with_no_items_is_empty_not_valid(one_reading_bundle: Any) -> None:
    client, bundle = one_reading_bundle
    tampered = copy.deepcopy(bundle) | {"items": [], "batches": [], "checkpoints": [], "keys": [], "newest": None}
    report = verify_bundle(tampered, reader_of(client), trust_of(client))
    assert (report.status, report.exit_code) == ("empty", EXIT_EMPTY), report.as_json()


def test_an_aggregate_item_that_names_another_device_fails(one_reading_bundle: Any) -> None:
    client, bundle = one_reading_bundle
    device = bundle["items"][0]["device_id"]
    r = get(client, "/api/v1/trace/bundle", None, device_id=device, types="emissions", limit=1)
    aggregates = r.json()
    assert aggregates["items"] and aggregates["items"][0]["kind"] == "aggregate", aggregates
    assert verify_bundle(aggregates, reader_of(client), trust_of(client)).status == "valid"
    for field, value, step in (("device_id", "dev-other", "decoded_view"), ("view", {}, "decoded_view")):
        tampered = copy.deepcopy(aggregates)
        tampered["items"][0][field] = value
        report = verify_bundle(tampered, reader_of(client), trust_of(client))
        assert (report.status, report.failed_step) == ("invalid", step), (field, report.as_json())
    other = copy.deepcopy(aggregates)
    other["query"]["device_id"] = "dev-other"  # another device's answer presented for this query
    report = verify_bundle(other, reader_of(client), trust_of(client))
    assert report.failed_step == "query_match", report.as_json()
