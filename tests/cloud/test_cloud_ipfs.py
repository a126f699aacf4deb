"""The content store against a real IPFS daemon: same CIDs, and no batch lost while IPFS is down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol.cid import CHUNK_SIZE, cid_for
from cloud.content_store import (
    BlobTooLarge,
    ContentStore,
    ContentStoreError,
    IpfsClient,
    IpfsUnavailable,
    LocalContentStore,
)
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import app_client, make_settings, register_tenant, upload
from tests.cloud.conftest import IpfsDaemon


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def test_our_cid_is_the_nodes_cid(ipfs_daemon: IpfsDaemon) -> None:
    ipfs = IpfsClient(ipfs_daemon.url)
    for blob in (b"carbontrace", os.urandom(CHUNK_SIZE), os.urandom(CHUNK_SIZE + 1), os.urandom(3 * CHUNK_SIZE + 77)):
        cid = ipfs.add(blob)
        assert cid == cid_for(blob), len(blob)
        assert ipfs.cat(cid) == blob
    assert cid_for(b"carbontrace").startswith("bafkrei")  # raw leaf, CIDv1 base32


def test_ingestion_with_ipfs_down_keeps_the_blob_and_pins_it_later(tmp_path: Path, ipfs_daemon: IpfsDaemon) -> None:
    with app_client(make_settings(tmp_path, content_store=ipfs_daemon.url)) as client:
        ledger = _ledger(client)
        gw = register_tenant(client, "Oscar", devices=1).gateway
        batch, readings = gw.build()
        r = upload(client, gw, batch)
        assert r.status_code == 201, r.text
        gw.accepted(batch, readings)
        assert ledger.store.ipfs is not None
        served = ledger.store.ipfs.cat(r.json()["cid"])  # pinned at once while IPFS is up
        # What an IPFS peer with the CID gets: the sealed blob, not one reading leaf in clear
        assert served == ledger.store.local.get(r.json()["cid"]) and cid_for(served) == r.json()["cid"]
        assert all(leaf not in served for leaf in batch.leaves)
        assert ledger.sealer.open(served, batch.id) == batch.encode()

        ipfs_daemon.stop()
        try:
            batch2, _ = gw.build()
            r = upload(client, gw, batch2)
            assert r.status_code == 201, r.text  # IPFS down does not stop ingestion
            cid = r.json()["cid"]
            assert ledger.sealer.open(ledger.store.local.get(cid), batch2.id) == batch2.encode()
            assert ledger.anchorer.pin_pending() == 0  # still down: stays unpinned
            try:
                ledger.store.ipfs.cat(cid)
                raise AssertionError("IPFS should be down")
            except IpfsUnavailable:
                pass
        finally:
            ipfs_daemon.start()
        report = ledger.anchorer.tick(force_checkpoint=True)
        assert (report.pinned, report.anchored) == (1, 1)  # the batch IPFS missed; the checkpoint went in directly
        assert ledger.sealer.open(ledger.store.ipfs.cat(cid), batch2.id) == batch2.encode()
        checkpoint_cid = client.get("/api/v1/log/checkpoints/latest").json()["cid"]
        assert cid_for(ledger.store.ipfs.cat(checkpoint_cid)) == checkpoint_cid
        assert ledger.anchorer.pin_pending() == 0


def test_a_blob_larger_than_the_bound_is_refused_not_read_whole(tmp_path: Path, ipfs_daemon: IpfsDaemon) -> None:
    # anyone can put bytes of any size on IPFS, and a cid the cloud fetches comes from the chain or a checkpoint
    # blob (recover-from-chain): past the bound it is a ContentStoreError, read no further than the bound
    big = os.urandom(3 * CHUNK_SIZE + 5)
    cid = IpfsClient(ipfs_daemon.url).add(big)
    bounded = IpfsClient(ipfs_daemon.url, max_blob_bytes=CHUNK_SIZE)
    with pytest.raises(BlobTooLarge, match="limit"):
        bounded.cat(cid)
    assert bounded.cat(IpfsClient(ipfs_daemon.url).add(big[:CHUNK_SIZE])) == big[:CHUNK_SIZE]  # at the bound: read
    store = ContentStore(LocalContentStore(tmp_path / "blobs"), bounded)
    with pytest.raises(ContentStoreError):
        store.get(cid)


def test_an_unreadable_stored_blob_is_a_content_store_error(tmp_path: Path) -> None:
    local = LocalContentStore(tmp_path / "blobs")
    cid = cid_for(b"a blob")
    (tmp_path / "blobs" / cid[-2:] / cid).mkdir(parents=True)  # a directory where the blob should be
    with pytest.raises(ContentStoreError, match="cannot be read"):
        local.get(cid)
