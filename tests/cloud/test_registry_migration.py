"""A cloud moved to a successor registry (cloud/registry_migration.py) on the embedded EVM and on Hardhat: the
migration resumes after a crash at any step, the running cloud anchors on the successor afterwards, and bundles
made before and after verify with the offline verifier pinned to either registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace.verify_bundle import Web3ChainReader
from carbontrace_protocol.proof_bundle import Trust, normalize_address
from carbontrace_protocol.proof_verify import verify_bundle_json
from cloud import registry_migration
from cloud.chain import KeyState, attach_registry
from cloud.models import Meta
from tests.cloud.cloud_testkit import app_client, make_settings
from tests.trace.trace_kit import Traced, anchor, get, ledger_of, tenant_with_batches, upload_batches

STEPS_REPORTED = ("anchoring paused", "deployed the successor", "carried registrations", "sealed", "the cloud now")


class Crash(Exception):
    pass


def _bundle(client: TestClient, traced: Traced) -> dict[str, Any]:
    answer = get(client, "/api/v1/trace/bundle", traced.tenant.enterprise_key, types="co2", limit=1000)
    assert answer.status_code == 200, answer.text
    bundle: dict[str, Any] = answer.json()
    return bundle


def _verify(client: TestClient, bundle: dict[str, Any], pinned: str) -> tuple[str, str | None, str]:
    ledger = ledger_of(client)
    w3 = ledger.chain.connect().w3
    report = verify_bundle_json(bundle, Web3ChainReader(w3, pinned), Trust(int(w3.eth.chain_id), pinned))
    return report.status, report.failed_step, report.detail


def _migrate(client: TestClient, crash_at: str | None = None) -> registry_migration.Progress:
    ledger = ledger_of(client)
    chain = ledger.chain

    def report(line: str) -> None:
        if crash_at is not None and line.startswith(crash_at):
            raise Crash(line)

    current = chain.registry()
    assert chain.signer is not None
    return registry_migration.migrate_registry(
        chain.connect(), chain.session_factory, chain.url, current.address, chain.signer, report
    )


@pytest.fixture(params=["embedded", "hardhat"])
def chain_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        return "embedded"
    return str(request.getfixturevalue("cloud_hardhat_node").url)


@pytest.mark.parametrize("crash_at", [None, *STEPS_REPORTED])
def test_migration_keeps_history_and_resumes_after_a_crash(
    tmp_path: Path, chain_url: str, crash_at: str | None
) -> None:
    with app_client(make_settings(tmp_path, chain=chain_url)) as client:
        traced = tenant_with_batches(client, "Migrating Co", batches=2)
        anchor(client)
        old = normalize_address(ledger_of(client).chain.registry().address)
        before = _bundle(client, traced)
        if crash_at is not None:
            with pytest.raises(Crash):
                _migrate(client, crash_at)
        progress = _migrate(client)
        assert progress.step == "done"
        new = normalize_address(progress.new or "")
        assert new != old
        ledger = ledger_of(client)
        chain = ledger.chain.connect()
        # sealed for the successor, which carried every key with its history; the cloud's record switched
        old_registry = attach_registry(chain, old, ledger.chain.signer)
        new_registry = attach_registry(chain, new, ledger.chain.signer)
        assert old_registry.registry_link().successor.lower() == new
        assert new_registry.registry_link().predecessor.lower() == old
        for event in old_registry.device_key_events() + old_registry.gateway_key_events():
            record = new_registry.key_state(event.key_fingerprint)
            assert record == old_registry.key_state(event.key_fingerprint) and record.state == KeyState.ACTIVE
        with ledger.chain.session_factory() as session:
            assert not registry_migration.anchoring_paused(session)
            remembered = session.get(Meta, registry_migration.registry_key(chain.chain_id, ledger.chain.url))
            assert remembered is not None and remembered.value.lower() == new
        # the running cloud anchors on the successor: its first anchor is refused by the sealed registry, the next
        # tick attaches to the successor (or it attached already through the switched record)
        upload_batches(client, traced, 2)
        for _ in range(2):
            report = ledger.anchorer.tick(force_checkpoint=True)
            if report.error is None and report.anchored:
                break
        assert new_registry.checkpoint_count() > new_registry.registry_link().predecessor_checkpoint_count
        assert get(client, "/api/v1/trust").json()["registry"] == new
        after = _bundle(client, traced)
        assert after["chain"]["registry"] == new and len(after["items"]) > len(before["items"])
        for bundle in (before, after):
            for pinned in (old, new):
                assert _verify(client, bundle, pinned)[:2] == ("valid", None), (pinned, _verify(client, bundle, pinned))
        # the cloud's own trace verifies across the hand-over too
        verified = get(client, "/api/v1/trace/verify", traced.tenant.enterprise_key, types="co2", limit=1000)
        assert verified.status_code == 200 and verified.json()["status"] == "valid", verified.text[:2000]


def test_a_forged_successor_fails_the_link(tmp_path: Path) -> None:
    """A registry claiming the cloud's registry as predecessor, never sealed for: pinned to it, the verifier
    refuses the bundle at registry_chain (successor_not_named)."""
    from cloud.chain import deploy_registry

    with app_client(make_settings(tmp_path, chain="embedded")) as client:
        traced = tenant_with_batches(client, "Forged Co", batches=1)
        anchor(client)
        ledger = ledger_of(client)
        assert ledger.chain.signer is not None
        pretender, _ = deploy_registry(ledger.chain.connect(), ledger.chain.signer, predecessor=ledger.chain.registry())
        status, step, detail = _verify(client, _bundle(client, traced), normalize_address(pretender.address))
        assert (status, step) == ("invalid", "registry_chain") and detail.startswith("successor_not_named"), detail
