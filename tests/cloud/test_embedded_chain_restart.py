"""The embedded development chain keeps its state across a restart of the cloud (issue 18).

A restarted embedded cloud used to deploy a fresh registry on a fresh in-process EVM, and bundles made before
the restart no longer verified. Now the chain's transaction journal (cloud/embedded_chain.py) is replayed: the
same registry, the same checkpoints, old bundles verify against the new process's chain, and anchoring goes on
from the next sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrace_protocol.proof_verify import verify_bundle_json
from cloud.embedded_chain import JournalMismatch
from tests.cloud.cloud_testkit import app_client, make_settings
from tests.file_modes import mode
from tests.trace.trace_kit import anchor, get, ledger_of, reader_of, tenant_with_batches, trust_of, upload_batches


def test_restarted_embedded_cloud_keeps_its_chain_and_old_bundles_verify(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        traced = tenant_with_batches(client, "Restart-A", batches=2)
        anchor(client)
        key = traced.tenant.enterprise_key
        before = get(client, "/api/v1/trace/bundle", key, types=["co2", "aggregates"], limit=1000).json()
        registry = ledger_of(client).chain.registry().address
        assert verify_bundle_json(before, reader_of(client), trust_of(client)).status == "valid"

    journal = tmp_path / "embedded-chain.jsonl"
    assert journal.is_file() and journal.read_text().count("\n") >= 5  # deploy, keys, parties, bindings, anchor
    assert mode(journal) == 0o600

    with app_client(settings) as client:
        ledger = ledger_of(client)
        assert ledger.chain.registry().address == registry  # attached, not deployed anew
        assert ledger.chain.registry().checkpoint_count() == 1
        report = verify_bundle_json(before, reader_of(client), trust_of(client))
        assert report.status == "valid", report.as_json()
        upload_batches(client, traced, 1)
        anchor(client)  # the next checkpoint on the same registry
        assert ledger.chain.registry().checkpoint_count() == 2
        after = get(client, "/api/v1/trace/bundle", key, types=["co2", "aggregates"], limit=1000).json()
        assert [c["seq"] for c in after["checkpoints"]] == [0, 1]
        assert verify_bundle_json(after, reader_of(client), trust_of(client)).status == "valid"


def test_memory_state_is_a_fresh_chain_each_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedded_chain_state="memory")
    with app_client(settings) as client:
        tenant_with_batches(client, "Restart-B", batches=1)
        anchor(client)
        first = ledger_of(client).chain.registry().address
    assert not (tmp_path / "embedded-chain.jsonl").exists()
    with app_client(settings) as client:
        assert ledger_of(client).chain.registry().checkpoint_count() == 0
        assert ledger_of(client).chain.registry().address == first  # same deployer and nonce, a new contract


def test_a_journal_that_is_not_this_chains_history_stops_the_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        tenant_with_batches(client, "Restart-C", batches=1)
        anchor(client)
    journal = tmp_path / "embedded-chain.jsonl"
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    entries[-1]["hash"] = "0x" + "00" * 32  # the recorded outcome of the last transaction edited
    journal.write_text("".join(json.dumps(e) + "\n" for e in entries))
    with pytest.raises(JournalMismatch, match="replays as"), app_client(settings) as client:
        ledger_of(client).chain.registry()


def test_a_torn_last_line_is_a_send_that_never_returned(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        tenant_with_batches(client, "Restart-D", batches=1)
        anchor(client)
        count = ledger_of(client).chain.registry().checkpoint_count()
    journal = tmp_path / "embedded-chain.jsonl"
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"raw": "0x02f8')  # a crash in the middle of the next append
    with app_client(settings) as client:
        assert ledger_of(client).chain.registry().checkpoint_count() == count
    assert journal.read_bytes() == whole
