"""The append-only log, signed checkpoints and their anchors, read back from the chain and verified offline."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carbontrace.servers import HardhatNode, TcpProxy
from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol import checkpoint_blob, merkle
from carbontrace_protocol.batch import Batch, decode_batch
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.verify import verify_es256
from cloud.chain import connect_embedded
from cloud.ledger import Ledger, build_ledger
from cloud.signing_key import public_key
from tests.cloud.cloud_testkit import GatewayKit, app_client, make_settings, register_tenant, upload


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def _upload_batches(client: TestClient, gw: GatewayKit, count: int) -> list[Batch]:
    batches = []
    for _ in range(count):
        batch, readings = gw.build(per_device=2)
        r = upload(client, gw, batch)
        assert r.status_code == 201, r.text
        gw.accepted(batch, readings)
        batches.append(batch)
    return batches


def _check_anchor(client: TestClient, batches: list[Batch], sequence: int) -> dict[str, object]:
    """Read checkpoint ``sequence`` from the chain and verify everything it names, independently of the cloud."""
    ledger = _ledger(client)
    onchain = ledger.chain.registry().checkpoint(sequence)
    leaves = [merkle.leaf_hash(b.signed_header) for b in batches[: onchain.tree_size]]
    assert onchain.tree_size == len(leaves)
    assert onchain.root == merkle.root(leaves)
    blob = checkpoint_blob.parse(ledger.store.get(onchain.cid))
    parsed = signed_checkpoint.parse(blob.signed)
    # the kid names the key that signed it (a verifier never guesses across a rotation)
    assert parsed.key_fingerprint == key_fingerprint(public_key(ledger.signing_key))
    assert verify_es256(public_key(ledger.signing_key), parsed.message.signed_bytes(), parsed.message.signature)
    assert (parsed.tree_size, parsed.root) == (onchain.tree_size, onchain.root)
    previous_size = 0
    if blob.previous is not None:
        previous_size, previous_root = blob.previous
        assert merkle.verify_consistency(
            previous_size, onchain.tree_size, previous_root, onchain.root, list(blob.consistency)
        )
    # the blob lists the cid of each batch blob it adds, in log order: the chain leads to every batch
    assert blob.batches is not None and len(blob.batches) == onchain.tree_size - previous_size
    for cid, batch in zip(blob.batches, batches[previous_size: onchain.tree_size], strict=True):
        opened = ledger.sealer.open(ledger.store.get(cid), batch.id)
        assert decode_batch(opened).signed_header == batch.signed_header
    # Inclusion of every batch in the anchored root, proof served by the API.
    for index, batch in enumerate(batches[: onchain.tree_size]):
        r = client.get("/api/v1/log/inclusion", params={"batch_id": batch.id, "tree_size": onchain.tree_size})
        proof = [bytes.fromhex(p) for p in r.json()["proof"]]
        assert r.json()["log_index"] == index
        assert merkle.verify_inclusion(leaves[index], index, onchain.tree_size, proof, onchain.root)
    return {"size": parsed.tree_size, "root": parsed.root, "time": parsed.time}


def test_checkpoints_anchor_log_roots(client: TestClient) -> None:
    gw = register_tenant(client, "Juliet", devices=1).gateway
    ledger = _ledger(client)
    assert ledger.anchorer.tick().created == 0  # empty log: nothing to sign
    batches = _upload_batches(client, gw, 5)
    report = ledger.anchorer.tick()
    assert (report.created, report.anchored) == (0, 0)  # not due: 1000 batches or an hour
    report = ledger.anchorer.tick(force_checkpoint=True)
    assert (report.created, report.anchored, report.error) == (1, 1, None)
    _check_anchor(client, batches, 0)

    ledger.anchorer.every_batches = 3  # now due by count alone
    batches += _upload_batches(client, gw, 2)
    assert ledger.anchorer.tick().created == 0
    batches += _upload_batches(client, gw, 1)
    assert ledger.anchorer.tick().anchored == 1
    payload = _check_anchor(client, batches, 1)
    assert payload["size"] == 8
    r = client.get("/api/v1/log/checkpoints/latest")
    assert r.json()["tree_size"] == 8 and r.json()["anchored"] and r.json()["gas_used"] > 0
    r = client.get("/api/v1/log/consistency", params={"first": 5, "second": 8})
    proof = [bytes.fromhex(p) for p in r.json()["proof"]]
    roots = [ledger.chain.registry().checkpoint(i).root for i in (0, 1)]
    assert merkle.verify_consistency(5, 8, roots[0], roots[1], proof)


def test_checkpoint_due_by_time(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    with app_client(make_settings(tmp_path, checkpoint_every_s=30)) as client:
        ledger = _ledger(client)
        ledger.anchorer.clock = lambda: now[0]
        gw = register_tenant(client, "Kilo", devices=1).gateway
        _upload_batches(client, gw, 1)
        with ledger.session_factory.begin() as session:  # the batch arrived "now" on the anchorer's clock
            from cloud.models import Batch as BatchRow

            session.query(BatchRow).update({BatchRow.received_at: int(now[0])})
        assert ledger.anchorer.tick().created == 0
        now[0] += 31
        assert ledger.anchorer.tick().created == 1


def test_chain_down_during_anchoring_then_back(tmp_path: Path, cloud_hardhat_node: HardhatNode) -> None:
    proxy = TcpProxy(cloud_hardhat_node.port)
    proxy.start()
    url = f"http://127.0.0.1:{proxy.port}"
    try:
        with app_client(make_settings(tmp_path, chain=url)) as client:
            ledger = _ledger(client)
            gw = register_tenant(client, "Lima", devices=1).gateway
            batches = _upload_batches(client, gw, 2)
            proxy.stop()
            # Ingestion does not need the chain; anchoring keeps checkpoints pending and in order.
            first = ledger.anchorer.tick(force_checkpoint=True)
            assert (first.created, first.anchored) == (1, 0) and first.error
            batches += _upload_batches(client, gw, 2)
            second = ledger.anchorer.tick(force_checkpoint=True)
            assert (second.created, second.anchored) == (1, 0)
            r = client.get("/api/v1/log/checkpoints")
            assert [(c["seq"], c["tree_size"], c["anchored"]) for c in r.json()] == [(0, 2, False), (1, 4, False)]
            proxy.start()
            third = ledger.anchorer.tick()
            assert (third.created, third.anchored, third.error) == (0, 2, None)
            registry = ledger.chain.registry()
            assert registry.checkpoint_count() == 2
            assert [e.tree_size for e in registry.checkpoint_events()] == [2, 4]
            _check_anchor(client, batches, 0)
            _check_anchor(client, batches, 1)
    finally:
        proxy.stop()


def test_anchor_on_hardhat(tmp_path: Path, cloud_hardhat_node: HardhatNode, cloud_figures: dict[str, str]) -> None:
    with app_client(make_settings(tmp_path, chain=cloud_hardhat_node.url)) as client:
        gw = register_tenant(client, "Mike", devices=1).gateway
        batches = _upload_batches(client, gw, 3)
        report = _ledger(client).anchorer.tick(force_checkpoint=True)
        assert (report.created, report.anchored, report.error) == (1, 1, None)
        sequence = _ledger(client).chain.registry().checkpoint_count() - 1
        _check_anchor(client, batches, sequence)
        gas = client.get("/api/v1/log/checkpoints/latest").json()["gas_used"]
        cloud_figures["gas per checkpoint anchor (Hardhat)"] = f"{gas:,}"


@pytest.mark.timeout(120)
def test_two_workers_never_anchor_at_once(tmp_path: Path, database_url: str) -> None:
    """Two workers on one database and chain tick concurrently while batches arrive: leadership terms never
    overlap and the chain holds every checkpoint once, in order."""
    chain = connect_embedded()
    settings = make_settings(tmp_path, database_url=database_url)
    with app_client(settings, chain) as client:
        first = _ledger(client)
        gw = register_tenant(client, "November", devices=1).gateway
        second = build_ledger(
            make_settings(tmp_path, database_url=database_url, registry_address=first.chain.registry().address), chain
        )
        workers = [first, second]
        stop = threading.Event()
        errors: list[BaseException] = []

        def run(worker: Ledger) -> None:
            try:
                while not stop.is_set():
                    worker.anchorer.tick(force_checkpoint=True)
            except BaseException as err:  # surfaced by the assertion below
                errors.append(err)

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        try:
            _upload_batches(client, gw, 8)
            # On a loaded machine one worker can win every race for a while: keep both ticking until each led.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(w.anchorer.terms for w in workers):
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not errors, errors
        first.anchorer.tick(force_checkpoint=True)  # drain: anchor whatever is pending
        terms = sorted([(s, e, i) for i, w in enumerate(workers) for s, e in w.anchorer.terms])
        assert {i for _, _, i in terms} == {0, 1}, "both workers should have led at some point"
        for (_, end, _), (start, _, _) in itertools.pairwise(terms):
            assert start >= end, "two leadership terms overlap"
        registry = first.chain.registry()
        sizes = [e.tree_size for e in registry.checkpoint_events()]
        assert sizes == sorted(set(sizes)) and sizes[-1] == 8
        r = client.get("/api/v1/log/checkpoints", params={"limit": 1000})
        assert [c["tree_size"] for c in r.json()] == sizes and all(c["anchored"] for c in r.json())
        second.engine.dispose()


def test_background_worker_anchors_by_itself(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, jobs_interval_s=0.1, checkpoint_every_batches=2)
    with app_client(settings) as client:
        gw = register_tenant(client, "Oscar", devices=1).gateway
        batches = _upload_batches(client, gw, 2)
        deadline = time.monotonic() + 20
        while client.get("/api/v1/log/checkpoints/latest").status_code != 200:
            assert time.monotonic() < deadline, "the job worker never anchored"
            time.sleep(0.1)
        _check_anchor(client, batches, 0)
