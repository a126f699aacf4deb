"""Move the cloud to a successor registry without losing history (`carbontrace cloud migrate-registry`).

Steps, each recorded in the database (Meta ``registry-migration@<chain id>``, JSON) before the next starts, and
each skipped on a re-run when the chain already shows it done, so a run that stopped anywhere can be run again:

  pause     anchoring waits (Meta ``anchoring-paused``: the anchoring leader checks it every tick), so the old
            registry's final checkpoint stays final while the successor records it
  deploy    the successor, constructed with the old registry's address and final checkpoint (checked by its
            constructor); a crash before the record is written leaves an unused contract, nothing else
  carry     every enterprise, platform, binding state and key record (with its activeFrom/revokedAt) of the
            old registry, read from its events and views, imported into the successor; what is there is skipped
  seal      old.sealFor(successor): from then on the old registry refuses every write; then the carry runs once
            more (a registration that reached the old registry before the seal is carried too)
  switch    the cloud's record of its registry (Meta ``registry@…``, what LedgerChain attaches to) names the
            successor, and anchoring resumes there
  done

Registrations are carried rather than referred to (contracts/CarbonTraceRegistry.sol, "Succession"): a verifier
pinned to the successor reads keys from one registry, and checks each carried record against the predecessor
while it follows the link (carbontrace_protocol/registry_chain.py); the key validity counters keep their meaning
because sequence numbers run on. Consent nonces are not carried: the successor's EIP-712 domain names its own
address, so a consent signed for the old registry cannot be replayed on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy.orm import Session, sessionmaker

from cloud import chain as chainlib
from cloud.models import Meta

logger = logging.getLogger("carbontrace.cloud")

STEPS = ("pause", "deploy", "carry", "seal", "switch", "done")
PAUSE_KEY = "anchoring-paused"
MAX_CHAIN_DEPTH = 8


def progress_key(chain_id: int) -> str:
    return f"registry-migration@{chain_id}"


def registry_key(chain_id: int, url: str) -> str:
    """The Meta key LedgerChain remembers its registry under (cloud/ledger_chain.py)."""
    return f"registry@{chain_id}:{url}"[:64]


@dataclass
class Progress:
    old: str
    new: str | None = None
    step: str = "pause"
    carried: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"old": self.old, "new": self.new, "step": self.step, "carried": self.carried})

    @classmethod
    def from_json(cls, text: str) -> Progress:
        data = json.loads(text)
        return cls(data["old"], data["new"], data["step"], dict(data.get("carried", {})))


def read_progress(sessions: sessionmaker[Session], chain_id: int) -> Progress | None:
    with sessions() as session:
        row = session.get(Meta, progress_key(chain_id))
        return None if row is None else Progress.from_json(row.value)


def _write(sessions: sessionmaker[Session], chain_id: int, progress: Progress) -> None:
    with sessions.begin() as session:
        session.merge(Meta(key=progress_key(chain_id), value=progress.to_json()))


def anchoring_paused(session: Session) -> bool:
    return session.get(Meta, PAUSE_KEY) is not None


def _set_paused(sessions: sessionmaker[Session], paused: bool, why: str = "") -> None:
    with sessions.begin() as session:
        row = session.get(Meta, PAUSE_KEY)
        if paused and row is None:
            session.add(Meta(key=PAUSE_KEY, value=why[:256]))
        elif not paused and row is not None:
            session.delete(row)


# ---- carrying registrations ----------------------------------------------------------------------------


def _deployed_at(registry: chainlib.RegistryContract) -> int:
    try:
        return registry.deployed_at_block()
    except chainlib.ContractReverted:  # a registry from before succession: no such view
        return 0


def carry(old: chainlib.RegistryContract, new: chainlib.RegistryContract) -> dict[str, int]:
    """Import into ``new`` every registration of ``old`` it does not hold yet; returns what was sent, by kind."""
    start = _deployed_at(old)
    sent = {"enterprises": 0, "platforms": 0, "bindings": 0, "keys": 0}
    enterprises = list(dict.fromkeys(bytes(e["args"]["enterpriseId"]) for e in old._events(
        "EnterpriseRegistered", start, "latest", None)))
    platforms = list(dict.fromkeys(bytes(e["args"]["platformId"]) for e in old._events(
        "PlatformRegistered", start, "latest", None)))
    for enterprise_id in enterprises:
        if int(new.enterprise(enterprise_id).account, 16) == 0:
            party = old.enterprise(enterprise_id)
            new.register_enterprise(enterprise_id, party.account, party.name)
            sent["enterprises"] += 1
    for platform_id in platforms:
        if int(new.platform(platform_id).account, 16) == 0:
            party = old.platform(platform_id)
            new.register_platform(platform_id, party.account, party.name)
            sent["platforms"] += 1
    pairs = dict.fromkeys((b.enterprise_id, b.platform_id) for b in old.binding_events(start))
    for enterprise_id, platform_id in pairs:
        state = old.binding_state(enterprise_id, platform_id)
        if new.binding_state(enterprise_id, platform_id) != state:
            new.import_binding(enterprise_id, platform_id, state)
            sent["bindings"] += 1
    # device and gateway ids in each enterprise's list order, so the successor's lists are the same lists
    for enterprise_id in enterprises:
        for kind, events in ((chainlib.SignerKind.DEVICE, old.device_key_events),
                             (chainlib.SignerKind.GATEWAY, old.gateway_key_events)):
            for signer_id in old.signers_of(enterprise_id, kind):
                for event in events(start, "latest", signer_id):
                    if event.kind == "registered":
                        sent["keys"] += _carry_key(old, new, enterprise_id, event.key_fingerprint)
    for event in old.cloud_key_events(start):
        if event.kind == "registered":
            sent["keys"] += _carry_key(old, new, bytes(32), event.key_fingerprint)
    return sent


def _carry_key(old: chainlib.RegistryContract, new: chainlib.RegistryContract, enterprise_id: bytes,
               fingerprint: bytes) -> int:
    if new.key_state(fingerprint).state != chainlib.KeyState.NONE:
        return 0
    new.import_key(enterprise_id, old.key_state(fingerprint), fingerprint)
    return 1


# ---- the whole migration ------------------------------------------------------------------------------


def migrate_registry(
    chain: chainlib.Chain,
    sessions: sessionmaker[Session],
    url: str,
    old_address: str,
    signer: chainlib.Sender,
    report: Callable[[str], None] = logger.info,
    attempts: int = 3,
) -> Progress:
    """Run (or resume) the migration of ``old_address`` to a successor; returns the final progress record."""
    chain_id = chain.chain_id
    progress = read_progress(sessions, chain_id)
    if progress is None or progress.step == "done":
        if progress is not None and progress.new is not None and _same(progress.new, old_address):
            old_address = progress.new  # migrating again: the last successor is now the one to move from
        progress = Progress(old=to_checksum_address(old_address))
        _write(sessions, chain_id, progress)
    old = chainlib.attach_registry(chain, progress.old, signer)
    if progress.step == "pause":
        _set_paused(sessions, True, f"registry migration from {progress.old}")
        report(f"anchoring paused; migrating from {progress.old}")
        progress.step = "deploy"
        _write(sessions, chain_id, progress)
    if progress.step == "deploy":
        sealed_for = old.registry_link().successor
        if int(sealed_for, 16) != 0:  # sealed by an earlier run that crashed before recording it
            progress.new = to_checksum_address(sealed_for)
        else:
            successor, deployed = chainlib.deploy_registry(chain, signer, predecessor=old)
            progress.new = successor.address
            report(f"deployed the successor {successor.address} (block {deployed.block_number})")
        progress.step = "carry"
        _write(sessions, chain_id, progress)
    assert progress.new is not None
    new = chainlib.attach_registry(chain, progress.new, signer)
    if progress.step == "carry":
        if int(old.registry_link().successor, 16) == 0:
            progress.carried = carry(old, new)
            report(f"carried registrations: {progress.carried}")
        progress.step = "seal"
        _write(sessions, chain_id, progress)
    if progress.step == "seal":
        if int(old.registry_link().successor, 16) == 0:
            try:
                old.seal_for(new.address)
            except chainlib.ContractReverted as exc:
                if exc.error_name != "BadSuccessor" or attempts <= 1:
                    raise
                # a checkpoint reached the old registry after the successor recorded its final one (one in
                # flight when anchoring paused): that successor can never be sealed for; deploy another
                report(f"{old.address} moved on after {new.address} was deployed: deploying another successor")
                progress.step, progress.new = "deploy", None
                _write(sessions, chain_id, progress)
                return migrate_registry(chain, sessions, url, old_address, signer, report, attempts - 1)
            report(f"sealed {old.address} for {new.address}")
        late = carry(old, new)  # anything that reached the old registry between the carry and the seal
        progress.carried = {k: progress.carried.get(k, 0) + v for k, v in late.items()}
        progress.step = "switch"
        _write(sessions, chain_id, progress)
    if progress.step == "switch":
        with sessions.begin() as session:
            session.merge(Meta(key=registry_key(chain_id, url), value=new.address))
        _set_paused(sessions, False)
        report(f"the cloud now anchors on {new.address}; anchoring resumed")
        progress.step = "done"
        _write(sessions, chain_id, progress)
    return progress


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


# ---- the chain of registries, as status shows it -------------------------------------------------------


def registry_chain_of(
    chain: chainlib.Chain, address: str, reader: chainlib.Sender = "0x" + "00" * 20
) -> list[dict[str, Any]]:
    """The registries from the newest successor of ``address`` back to the first, newest first (``reader``: the
    account views are called from; the embedded EVM wants one that could pay for the call's gas)."""
    current = chainlib.attach_registry(chain, address, reader)
    for _ in range(MAX_CHAIN_DEPTH):  # forward to the newest
        link = link_or_none(current)
        if link is None or not link.sealed:
            break
        current = chainlib.attach_registry(chain, link.successor, current.sender)
    out: list[dict[str, Any]] = []
    for _ in range(MAX_CHAIN_DEPTH):
        link = link_or_none(current)
        out.append({
            "registry": current.address,
            "first_checkpoint": 0 if link is None else link.predecessor_checkpoint_count,
            "checkpoints": current.checkpoint_count(),
            "sealed_for": link.successor if link is not None and link.sealed else None,
        })
        if link is None or not link.has_predecessor:
            break
        current = chainlib.attach_registry(chain, link.predecessor, current.sender)
    return out


def link_or_none(registry: chainlib.RegistryContract) -> chainlib.RegistryLink | None:
    try:
        return registry.registry_link()
    except chainlib.ContractReverted:
        return None


def newest_successor(registry: chainlib.RegistryContract) -> chainlib.RegistryContract:
    """Follow the successor links of a sealed registry to the open one (each link checked both ways)."""
    current = registry
    for _ in range(MAX_CHAIN_DEPTH):
        link = link_or_none(current)
        if link is None or not link.sealed:
            return current
        successor = chainlib.attach_registry(current.chain, link.successor, current.sender)
        back = successor.registry_link()
        if not _same(back.predecessor, current.address):
            raise chainlib.ChainError(
                f"{current.address} names successor {successor.address}, which names {back.predecessor}"
            )
        current = successor
    raise chainlib.ChainError(f"more than {MAX_CHAIN_DEPTH} successors after {registry.address}")
