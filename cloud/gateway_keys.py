"""Put the keys of gateways registered before gateway keys went on chain (migration 0003) on chain.

Safe to run any number of times: a gateway whose key the chain already lists for it (for instance because an
earlier run sent the transaction and then lost its database write) only gets the registration transaction
recorded, found from the contract's GatewayKeyRegistered events. A key the chain holds for anyone else, or
revoked, is reported and left alone: that needs a person.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from cloud import models
from cloud.chain import KeyState, SignerKind, key_fingerprint
from cloud.ledger import Ledger
from cloud.ledger_chain import chain_id_of


@dataclass
class BackfillReport:
    registered: list[str] = field(default_factory=list)  # a transaction was sent now
    recorded: list[str] = field(default_factory=list)  # already on chain: only the database was updated
    conflicts: dict[str, str] = field(default_factory=dict)  # gateway id -> why it was left alone


def register_missing_gateway_keys(ledger: Ledger) -> BackfillReport:
    report = BackfillReport()
    registry = ledger.chain.registry()
    with ledger.read_session_factory() as session:
        pending = [
            (gateway.id, gateway.public_key, site.enterprise_id)
            for gateway, site in session.execute(
                select(models.Gateway, models.Site)
                .join(models.Site, models.Site.id == models.Gateway.site_id)
                .where(models.Gateway.registered_tx.is_(None), models.Gateway.status == "active")
                .order_by(models.Gateway.id)
            ).all()
        ]
    for gateway_id, public_key, enterprise_id in pending:
        fingerprint = key_fingerprint(public_key)
        record = registry.key_state(fingerprint)
        if record.state == KeyState.NONE:
            tx = "0x" + registry.register_gateway_key(
                chain_id_of(enterprise_id), chain_id_of(gateway_id), fingerprint
            ).tx_hash.hex()
            report.registered.append(gateway_id)
        elif (
            record.state == KeyState.ACTIVE
            and record.kind == SignerKind.GATEWAY
            and record.signer_id == chain_id_of(gateway_id)
        ):
            events = [
                e for e in registry.gateway_key_events(gateway_id=record.signer_id)
                if e.kind == "registered" and e.key_fingerprint == fingerprint
            ]
            tx = "0x" + events[-1].tx_hash.hex()
            report.recorded.append(gateway_id)
        else:
            report.conflicts[gateway_id] = (
                f"the chain lists this key as {record.state.name.lower()} for a {record.kind.name.lower()}"
            )
            continue
        with ledger.session_factory.begin() as session:
            row = session.get(models.Gateway, gateway_id)
            assert row is not None
            row.registered_tx = tx
    return report
