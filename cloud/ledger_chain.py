"""The cloud's use of the chain: which node, which registry contract, the operator's chain key (the cloud signs
its own transactions: cloud/chain_signer.py), and the cloud's own checkpoint signing key on chain.

Enterprises and platforms hold their own chain keys; the cloud stores only their addresses and relays their
signed consents (cloud/consent.py). No node account is ever used.

Built on cloud/chain.py (the contract client). The node is reached lazily and again after a failure, so a
chain that is down at start-up or later only delays registry writes and anchors; ingestion never needs it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from eth_utils.address import to_checksum_address
from sqlalchemy.orm import Session, sessionmaker

from carbontrace_protocol.ids import CLOUD_SIGNER, key_fingerprint
from carbontrace_protocol.ids import chain_id_of as chain_id_of  # re-exported: defined once, in ids
from cloud import chain as chainlib
from cloud.chain_signer import ChainSigner
from cloud.models import Meta
from cloud.registry_migration import MAX_CHAIN_DEPTH, link_or_none, newest_successor

logger = logging.getLogger("carbontrace.cloud")

# The id the registry lists the cloud's checkpoint and statement signing keys under.
CLOUD_ID = chain_id_of(CLOUD_SIGNER)
_NO_KEY = bytes(32)
# The sender of calls made by a tool without the operator's key (views only; a transaction would fail).
_READ_ONLY = "0x" + "00" * 20


# What a development node's operator account is topped up to, and the balance below which it is.
DEV_FUNDING_WEI = 100 * 10**18
DEV_FUNDING_THRESHOLD_WEI = 10**18


class OperatorMismatch(chainlib.ChainError):
    """The configured registry's operator is not the cloud's chain key: the cloud could not sign for it."""


def fund_from_dev_node(chain: chainlib.Chain, address: str, wei: int = DEV_FUNDING_WEI) -> bool:
    """Top up ``address`` on a development node (embedded, Hardhat, Anvil): from the node's first unlocked
    account, or with anvil_setBalance / hardhat_setBalance on a node without accounts. Never on a real network
    (the caller decides: settings.fund_operator_from_dev_node). Returns whether it funded."""
    if chain.balance(address) >= DEV_FUNDING_THRESHOLD_WEI:
        return False
    accounts = chain.accounts
    if accounts:
        chain.send_value(accounts[0], address, wei)
        return True
    for method in ("anvil_setBalance", "hardhat_setBalance"):
        response = chain.w3.provider.make_request(method, [address, hex(wei)])  # type: ignore[arg-type]
        if "error" not in response:
            return True
    raise chainlib.ChainError("this node has no unlocked accounts and no setBalance method: fund the operator")


class CloudKeyConflict(chainlib.ChainError):
    """The chain disagrees with the cloud's signing key file (another key active, or this one revoked or held by
    someone else): a person decides, `carbontrace cloud rotate-cloud-key` being the way to change keys."""


def ensure_cloud_key(registry: chainlib.RegistryContract, public_key: bytes) -> chainlib.TxResult | None:
    """Register the cloud's signing key under CLOUD_ID unless the chain already lists it active there.

    Returns the registration, None when nothing had to be sent. Never rotates: if another cloud key is active,
    or this key was revoked, it raises CloudKeyConflict instead."""
    fingerprint = key_fingerprint(public_key)
    record = registry.key_state(fingerprint)
    if _is_active_cloud_key(record):
        return None
    if record.state != chainlib.KeyState.NONE:
        raise CloudKeyConflict(
            f"the chain lists the cloud signing key {fingerprint.hex()} as {record.state.name.lower()} for a "
            f"{record.kind.name.lower()}: it cannot sign for the cloud; use the current key file or rotate"
        )
    active = registry.cloud_key(CLOUD_ID)
    if active != _NO_KEY:
        raise CloudKeyConflict(
            f"the chain lists another cloud signing key ({active.hex()}) as active, not {fingerprint.hex()}: "
            "point the cloud at that key's file, or replace it with `carbontrace cloud rotate-cloud-key`"
        )
    try:
        return registry.register_cloud_key(CLOUD_ID, fingerprint)
    except chainlib.ContractReverted as exc:
        # Another worker starting at the same time may have registered it between the read and the send.
        if exc.error_name == "KeyAlreadyRegistered" and _is_active_cloud_key(registry.key_state(fingerprint)):
            return None
        raise


def rotate_cloud_key(
    registry: chainlib.RegistryContract, old_public_key: bytes, new_public_key: bytes
) -> list[chainlib.TxResult]:
    """Revoke the old cloud key and register the new one under CLOUD_ID; returns the transactions sent.

    Resumable: a step the chain already shows done (old key revoked, new key active) is skipped, so a run that
    stopped half-way can be run again with the same two keys."""
    old, new = key_fingerprint(old_public_key), key_fingerprint(new_public_key)
    sent: list[chainlib.TxResult] = []
    active = registry.cloud_key(CLOUD_ID)
    if active == old:
        sent.append(registry.revoke_cloud_key(CLOUD_ID, old))
        active = _NO_KEY
    if active == new:
        return sent
    if active != _NO_KEY:
        raise CloudKeyConflict(
            f"the chain lists a third cloud signing key ({active.hex()}) as active, neither the old "
            f"({old.hex()}) nor the new ({new.hex()}): not rotating"
        )
    sent.append(registry.register_cloud_key(CLOUD_ID, new))
    return sent


def _is_active_cloud_key(record: chainlib.KeyRecord) -> bool:
    return (
        record.state == chainlib.KeyState.ACTIVE
        and record.kind == chainlib.SignerKind.CLOUD
        and record.signer_id == CLOUD_ID
    )


class LedgerChain:
    def __init__(
        self,
        url: str,
        session_factory: sessionmaker[Session],
        registry_address: str = "",
        chain: chainlib.Chain | None = None,
        cloud_public_key: bytes | None = None,
        signer: ChainSigner | None = None,
        fund_operator: bool = False,
        embedded_journal: Path | None = None,
    ) -> None:
        self.url = url
        # The embedded chain's history (cloud/embedded_chain.py); None: it lives in this process only.
        self.embedded_journal = embedded_journal
        self.session_factory = session_factory
        self.registry_address = registry_address
        # When set, the registry is handed out only once the chain lists this key as the cloud's (ensure_cloud_key).
        self.cloud_public_key = cloud_public_key
        # The operator's chain key; None only for tools that just read (every write needs it).
        self.signer = signer
        self.fund_operator = fund_operator
        self._chain = chain
        self._funded = False
        self._registry: chainlib.RegistryContract | None = None
        self._registries: list[str] = []
        self._lock = threading.RLock()

    def connect(self) -> chainlib.Chain:
        with self._lock:
            if self._chain is None:
                self._chain = (
                    chainlib.connect_embedded(self.embedded_journal)
                    if self.url == "embedded"
                    else chainlib.connect_rpc(self.url)
                )
            if self.fund_operator and not self._funded and self.signer is not None:
                if fund_from_dev_node(self._chain, self.signer.address):
                    logger.info("funded the operator account %s from the development node", self.signer.address)
                self._funded = True
            return self._chain

    def registry(self) -> chainlib.RegistryContract:
        """The registry contract, deployed on first use when no address is configured or remembered; with a
        cloud key configured, only once the chain lists it (registered here if need be)."""
        with self._lock:
            if self._registry is not None:
                return self._registry
            registry = self._attach_or_deploy()
            if self.cloud_public_key is not None:
                # Outside the deploy's transaction: a failure here keeps the remembered address for the retry.
                registered = ensure_cloud_key(registry, self.cloud_public_key)
                if registered is not None:
                    logger.info("registered the cloud signing key on chain (tx 0x%s)", registered.tx_hash.hex())
            self._registry = registry
            return registry

    def forget_registry(self) -> None:
        """Drop the attached registry: it was sealed (a migration); the next use attaches to its successor."""
        with self._lock:
            self._registry = None

    def registries(self) -> list[str]:
        """The chain of registries, current first, back through its predecessors (immutable links: read once
        per current registry)."""
        registry = self.registry()
        with self._lock:
            if self._registries and self._registries[0] == registry.address:
                return list(self._registries)
        addresses: list[str] = [registry.address]
        current = registry
        for _ in range(MAX_CHAIN_DEPTH):
            link = link_or_none(current)
            if link is None or not link.has_predecessor:
                break
            current = chainlib.attach_registry(current.chain, link.predecessor, current.sender)
            addresses.append(current.address)
        with self._lock:
            self._registries = addresses
        return list(addresses)

    def registry_holding(self, seq: int) -> chainlib.RegistryContract:
        """The registry of the chain of registries that checkpoint ``seq`` was anchored on."""
        registry = self.registry()
        for _ in range(MAX_CHAIN_DEPTH):
            link = link_or_none(registry)
            if link is None or not link.has_predecessor or seq >= link.predecessor_checkpoint_count:
                return registry
            registry = chainlib.attach_registry(registry.chain, link.predecessor, registry.sender)
        return registry

    def _attach_or_deploy(self) -> chainlib.RegistryContract:
        chain = self.connect()
        meta_key = f"registry@{chain.chain_id}:{self.url}"[:64]
        address = self.registry_address
        with self.session_factory.begin() as session:
            remembered = session.get(Meta, meta_key)
            # an embedded chain without a journal is new in every process: what we remember of it is gone
            kept = self.url != "embedded" or self.embedded_journal is not None
            if not address and remembered is not None and kept:
                address = remembered.value
                if self.url == "embedded" and not chain.w3.eth.get_code(to_checksum_address(address)):
                    logger.warning("the embedded chain's journal lacks the remembered registry %s: deploying anew",
                                   address)
                    address = ""
            if address:
                # a sealed registry hands over to its successor: anchor there (cloud/registry_migration.py)
                registry = newest_successor(chainlib.attach_registry(chain, address, self.signer or _READ_ONLY))
                if self.signer is not None and registry.operator().lower() != self.signer.address.lower():
                    raise OperatorMismatch(
                        f"the registry {registry.address} has operator {registry.operator()}, not the cloud's chain "
                        f"key {self.signer.address}: point CT_CLOUD_CHAIN_KEY_FILE at the operator's key"
                    )
                return registry
            if self.signer is None:
                raise chainlib.ChainError("no registry address and no operator chain key to deploy one with")
            registry, _ = chainlib.deploy_registry(chain, self.signer)
            session.merge(Meta(key=meta_key, value=registry.address))
            return registry
