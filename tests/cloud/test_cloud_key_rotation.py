"""`carbontrace cloud rotate-cloud-key` against a Hardhat node the cloud remembers its registry on (a chain
outliving the process, as in production)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.chain import KeyRecord, KeyState, SignerKind, attach_registry, connect_rpc
from cloud.cli import cloud_app
from cloud.ledger import build_ledger
from cloud.ledger_chain import CLOUD_ID, CloudKeyConflict
from cloud.settings import Settings
from cloud.signing_key import load_or_create, public_key
from tests.cloud.cloud_testkit import make_settings
from tests.cloud.conftest import HardhatNode


def _fingerprint_of(key_file: Path) -> bytes:
    from carbontrace_protocol.ids import key_fingerprint

    return key_fingerprint(public_key(load_or_create(str(key_file), allow_create=False)))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def settings(tmp_path: Path, cloud_hardhat_node: HardhatNode, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """One configuration for the server (build_ledger) and the CLI (Settings() from the environment)."""
    settings = make_settings(tmp_path, chain=cloud_hardhat_node.url)
    for name in ("database_url", "content_dir", "signing_key_file", "chain_key_file", "chain", "fund_operator_from_dev_node"):
        monkeypatch.setenv(f"CT_CLOUD_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("CT_CLOUD_OPERATOR_KEY_FILE", settings.operator_key_file)
    return settings


def test_rotate_cloud_key_revokes_the_old_key_registers_a_new_one_and_keeps_the_old_file(settings: Settings) -> None:
    ledger = build_ledger(settings)
    registry = ledger.chain.registry()
    key_file = Path(settings.signing_key_file)
    old = _fingerprint_of(key_file)
    assert registry.cloud_key(CLOUD_ID) == old
    ledger.chain.registry().anchor_checkpoint(1, bytes(32), "bafk-test-1")  # history under the old key
    ledger.engine.dispose()

    result = CliRunner().invoke(cloud_app, ["rotate-cloud-key"])
    assert result.exit_code == 0, result.output
    new = _fingerprint_of(key_file)
    assert new != old
    retired = [p for p in key_file.parent.iterdir() if p.name.startswith(key_file.name + ".revoked-")]
    assert len(retired) == 1 and _fingerprint_of(retired[0]) == old
    assert _mode(key_file) == 0o600 and _mode(retired[0]) == 0o600
    assert not key_file.with_name(key_file.name + ".new").exists()

    # the chain: the old key keeps its window (checkpoint 0), the new one starts at checkpoint 1
    chain = connect_rpc(settings.chain)
    registry = attach_registry(chain, registry.address)
    assert registry.cloud_key(CLOUD_ID) == new
    assert registry.key_state(old) == KeyRecord(KeyState.REVOKED, SignerKind.CLOUD, CLOUD_ID, bytes(32), 0, 1)
    assert registry.key_state(new) == KeyRecord(KeyState.ACTIVE, SignerKind.CLOUD, CLOUD_ID, bytes(32), 1, None)
    assert [(e.kind, e.key_fingerprint) for e in registry.cloud_key_events()] == [
        ("registered", old), ("revoked", old), ("registered", new)
    ]

    # the restarted cloud finds its new key listed; a cloud started on the old file refuses to start
    block = chain.block_number()
    restarted = build_ledger(settings)
    assert restarted.chain.registry().cloud_key(CLOUD_ID) == new and chain.block_number() == block
    restarted.engine.dispose()
    with pytest.raises(CloudKeyConflict, match="revoked"):
        build_ledger(settings.model_copy(update={"signing_key_file": str(retired[0])}))


def test_rotate_cloud_key_finishes_a_rotation_that_stopped_after_the_revocation(settings: Settings) -> None:
    ledger = build_ledger(settings)
    registry = ledger.chain.registry()
    key_file = Path(settings.signing_key_file)
    old = _fingerprint_of(key_file)
    pending = key_file.with_name(key_file.name + ".new")
    load_or_create(str(pending), allow_create=True)  # what the interrupted run had created
    registry.revoke_cloud_key(CLOUD_ID, old)  # ... and sent
    ledger.engine.dispose()

    result = CliRunner().invoke(cloud_app, ["rotate-cloud-key"])
    assert result.exit_code == 0, result.output
    new = _fingerprint_of(key_file)
    assert registry.cloud_key(CLOUD_ID) == new != old
    assert [e.kind for e in registry.cloud_key_events()] == ["registered", "revoked", "registered"]


def test_rotate_cloud_key_without_a_key_file_changes_nothing(settings: Settings) -> None:
    result = CliRunner().invoke(cloud_app, ["rotate-cloud-key"])
    assert result.exit_code == 1
    assert not Path(settings.signing_key_file).exists()
