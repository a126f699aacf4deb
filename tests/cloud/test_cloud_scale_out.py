"""Scale-out: two cloud processes on one PostgreSQL ingest at once, idempotently, and one of them anchors.

Several gateways upload their batch chains to both processes concurrently, every batch to both at the same
moment: each batch is stored once (one 201, the other the duplicate's 200 with the same receipt), the log
indexes are unique and gap-free, never two processes hold the anchoring lock, every checkpoint is anchored once, and
every batch's inclusion proof from either process verifies against the anchored root.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from carbontrace.benchmarks.e2e_bench import prove_sample
from carbontrace.servers import AnvilNode, CloudProcess, wait_until
from carbontrace_host.secret_files import write_secret
from cloud.leader import ANCHOR_LOCK_KEY
from tests.cloud.cloud_testkit import ADMIN_KEY, GatewayKit, openssl_sign_reading, register_tenant
from tests.cloud.conftest import PostgresCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GATEWAYS = 3
BATCHES_PER_GATEWAY = 4


@pytest.fixture
def two_clouds(tmp_path: Path, postgres_cluster: PostgresCluster) -> Iterator[list[CloudProcess]]:
    anvil = AnvilNode(tmp_path / "anvil")
    anvil.start()
    first = CloudProcess(tmp_path / "cloud", database_url=postgres_cluster.create_database(), chain=anvil.url,
                         checkpoint_every_s=0.5, jobs_interval_s=0.2, confirmations=0)
    write_secret(Path(first.env["CT_CLOUD_OPERATOR_KEY_FILE"]), ADMIN_KEY + "\n")  # the testkit's operator key
    clouds = [first, first.replica("2")]
    try:
        for cloud in clouds:
            cloud.start()
        yield clouds
    finally:
        for cloud in clouds:
            cloud.stop()
        anvil.stop()


def _upload(url: str, gateway: GatewayKit, blob: bytes) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/batches", content=blob, timeout=60,
                      headers={"Content-Type": "application/cbor", "Authorization": f"Bearer {gateway.api_key}"})


def _upload_chain_to_both(clouds: list[CloudProcess], gateway: GatewayKit, answers: list[tuple[int, Any]]) -> None:
    """The gateway's batches in order; each one to both processes at the same moment (a retry that went to
    the other replica while the first upload was still in flight)."""
    for _ in range(BATCHES_PER_GATEWAY):
        batch, readings = gateway.build(per_device=20, signer=openssl_sign_reading)
        blob = batch.encode()
        got: list[httpx.Response] = []
        start = threading.Barrier(len(clouds))

        def send(url: str, got: list[httpx.Response] = got, start: threading.Barrier = start,
                 blob: bytes = blob) -> None:
            start.wait()
            got.append(_upload(url, gateway, blob))

        threads = [threading.Thread(target=send, args=(cloud.url,)) for cloud in clouds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        answers.extend((r.status_code, r.json()) for r in got)
        assert sorted(r.status_code for r in got) == [200, 201], [r.text for r in got]
        first, second = (r.json() for r in got)
        assert first == second  # the duplicate answers with the stored batch's receipt
        gateway.accepted(batch, readings)


def test_two_cloud_processes_ingest_at_once_and_one_anchors(two_clouds: list[CloudProcess]) -> None:
    with httpx.Client(base_url=two_clouds[0].url, timeout=60) as http:
        # The testkit's helpers take a TestClient; an httpx.Client on a real process serves the same calls.
        gateways = [register_tenant(cast(TestClient, http), f"Scale {n}", devices=3).gateway
                    for n in range(GATEWAYS)]
    answers: list[tuple[int, Any]] = []
    failures: list[BaseException] = []

    def run(gateway: GatewayKit) -> None:
        try:
            _upload_chain_to_both(two_clouds, gateway, answers)
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    database_url = two_clouds[0].database_url
    engine = create_engine(database_url)
    holders: list[int] = []
    sampling = threading.Event()

    def sample_leaders() -> None:
        with engine.connect() as db:
            while not sampling.wait(0.02):
                holders.append(int(db.execute(text(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = :k"), {"k": ANCHOR_LOCK_KEY}).scalar() or 0))
                db.rollback()

    sampler = threading.Thread(target=sample_leaders)
    sampler.start()
    threads = [threading.Thread(target=run, args=(gateway,)) for gateway in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = GATEWAYS * BATCHES_PER_GATEWAY
    try:
        assert not failures, failures
        with engine.connect() as db:
            stored = db.execute(text("SELECT id, log_index FROM batches ORDER BY log_index")).all()
            assert len({row[0] for row in stored}) == len(stored) == total  # every batch once
            assert [row[1] for row in stored] == list(range(total))  # log indexes unique and gap-free
            assert db.execute(text("SELECT COUNT(*) FROM readings")).scalar() == total * 3 * 20
        assert {a["log_index"] for _, a in answers} == set(range(total))

        def anchored_size() -> int:
            with engine.connect() as db:
                return int(db.execute(text("SELECT MAX(tree_size) FROM checkpoints WHERE anchored")).scalar() or 0)

        wait_until(lambda: anchored_size() == total, 60, "a checkpoint of every batch, anchored")
        sampling.set()
        sampler.join()
        # One leader at a time: the anchoring lock is taken per job tick (cloud/anchoring.py), and no sample of
        # pg_locks ever saw two holders, while some saw one; every checkpoint was anchored once, by its own tx.
        assert max(holders) == 1, holders
        with engine.connect() as db:
            checkpoints = db.execute(text("SELECT seq, tx_hash FROM checkpoints WHERE anchored ORDER BY seq")).all()
            assert [row[0] for row in checkpoints] == list(range(len(checkpoints)))
            assert len({row[1] for row in checkpoints}) == len(checkpoints)
    finally:
        sampling.set()
        sampler.join()
        engine.dispose()
    for cloud in two_clouds:  # either process proves every batch against the anchored root
        assert prove_sample(cloud.url, database_url, samples=total)["batches_proven"] == total
