"""The cloud's use of the chain: which node, which registry contract, which custodial account.

Built on cloud/chain.py (the contract client). The node is reached lazily and again after a failure, so a
chain that is down at start-up or later only delays registry writes and anchors; ingestion never needs it.
"""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud import chain as chainlib
from cloud.models import Enterprise, Meta, Platform


def chain_id_of(text_id: str) -> bytes:
    """The bytes32 an id has on chain: sha256 of its UTF-8 text (device ids may exceed 32 bytes)."""
    return hashlib.sha256(text_id.encode()).digest()


class NoCustodialAccount(chainlib.ChainError):
    pass


class LedgerChain:
    def __init__(
        self,
        url: str,
        session_factory: sessionmaker[Session],
        registry_address: str = "",
        chain: chainlib.Chain | None = None,
    ) -> None:
        self.url = url
        self.session_factory = session_factory
        self.registry_address = registry_address
        self._chain = chain
        self._registry: chainlib.RegistryContract | None = None
        self._lock = threading.RLock()

    def connect(self) -> chainlib.Chain:
        with self._lock:
            if self._chain is None:
                self._chain = chainlib.connect_embedded() if self.url == "embedded" else chainlib.connect_rpc(self.url)
            return self._chain

    def registry(self) -> chainlib.RegistryContract:
        """The registry contract, deployed on first use when no address is configured or remembered."""
        with self._lock:
            if self._registry is not None:
                return self._registry
            chain = self.connect()
            meta_key = f"registry@{chain.chain_id}:{self.url}"[:64]
            address = self.registry_address
            with self.session_factory.begin() as session:
                remembered = session.get(Meta, meta_key)
                if not address and remembered is not None and self.url != "embedded":
                    address = remembered.value
                if address:
                    self._registry = chainlib.attach_registry(chain, address)
                else:
                    self._registry, _ = chainlib.deploy_registry(chain)
                    session.merge(Meta(key=meta_key, value=self._registry.address))
            return self._registry

    def as_party(self, account: str) -> chainlib.RegistryContract:
        return self.registry().with_sender(account)

    def allocate_account(self, session: Session) -> str:
        """A custodial account for a new enterprise or platform: the next unlocked node account not yet used."""
        chain = self.connect()
        operator = self.registry().operator().lower()
        used = {a.lower() for a in session.scalars(select(Enterprise.chain_account))}
        used |= {a.lower() for a in session.scalars(select(Platform.chain_account))}
        for account in chain.accounts:
            if account.lower() != operator and account.lower() not in used:
                return account
        raise NoCustodialAccount("no free custodial account on this chain node")
