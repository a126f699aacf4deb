"""Trace over the settled chain facts (cloud/chain_facts.py) still sees a revocation and serves only its own chain.

The device key's state is read (and kept) by a first trace; the key is then revoked on chain by someone other
than this cloud process (straight through the registry, as another replica or the enterprise would). A pending
item needs its keys active now: once the key TTL has passed, the same trace fails at device_key.
"""

from __future__ import annotations

import time
from pathlib import Path

from carbontrace_protocol.ids import chain_id_of, key_fingerprint
from cloud import chain_facts
from tests.cloud.cloud_testkit import app_client, make_settings
from tests.trace.trace_kit import anchor, get, ledger_of, tenant_with_batches, upload_batches

KEY_TTL_S = 0.5


def test_a_key_revoked_elsewhere_after_being_kept_fails_a_pending_item_once_the_ttl_has_passed(
    tmp_path: Path,
) -> None:
    with app_client(make_settings(tmp_path, trace_key_ttl_s=KEY_TTL_S)) as client:
        traced = tenant_with_batches(client, "Kept Key", batches=1)
        anchor(client)
        upload_batches(client, traced, 1)  # pending: not anchored yet
        device = traced.tenant.gateway.devices[0]
        pending = traced.batches[1].id

        def status() -> tuple[str, str | None]:
            r = get(client, "/api/v1/trace/verify", traced.tenant.enterprise_key, device_id=device.device_id,
                    types="co2")
            assert r.status_code == 200, r.text
            item = next(i for i in r.json()["items"] if i["batch_id"] == pending)
            return item["status"], item["failed_step"]

        assert status() == ("pending", None)  # the key's active state is now kept
        registry = ledger_of(client).chain.registry()
        registry.revoke_device_key(chain_id_of(traced.tenant.enterprise_id), chain_id_of(device.device_id),
                                   key_fingerprint(device.public))
        time.sleep(KEY_TTL_S)
        assert status() == ("invalid", "device_key")


def test_the_kept_checkpoints_belong_to_the_registry_they_were_read_from(tmp_path: Path) -> None:
    """Two clouds in one process, each on its own embedded EVM: same chain id, and the registry may well sit at
    the same address. Each traces valid against its own chain; neither is served the other's checkpoints."""
    answers = []
    for name in ("one", "two"):
        with app_client(make_settings(tmp_path / name)) as client:
            traced = tenant_with_batches(client, f"Cloud {name}", batches=1)
            anchor(client)
            device = traced.tenant.gateway.devices[0].device_id
            r = get(client, "/api/v1/trace/verify", traced.tenant.enterprise_key, device_id=device, types="co2")
            assert r.status_code == 200 and r.json()["status"] == "valid", r.text
            registry = ledger_of(client).chain.registry()
            facts = chain_facts.facts_for(registry.chain, registry.chain.chain_id, registry.address)
            answers.append((registry.chain.chain_id, registry.address.lower(), dict(facts.checkpoints)))
    (id_one, address_one, kept_one), (id_two, address_two, kept_two) = answers
    assert kept_one and kept_two
    if (id_one, address_one) == (id_two, address_two):
        assert kept_one[0].root != kept_two[0].root  # same key, different chains: each kept its own
