"""What the chain said that cannot change any more, kept across trace requests (one store per registry).

A trace verifies against the chain, and on the embedded EVM one contract view costs 30-100 ms: reading every
checkpoint and key per request is what made trace slow, not SQL. Most of what it reads is settled:

* a checkpoint (size, root, cid) at sequence ``seq`` never changes once anchored at final depth: the
  registry only appends. It is kept for good once ``seq`` is below the count read ``depth`` blocks back
  (``depth`` = the cloud's confirmation depth; 0 on the embedded chain, where every block is final);
* a revoked key stays revoked (the contract refuses to register it again), so a revoked state is kept for
  good: serving it can only fail more, never less;
* an active key can be revoked at any moment, so its state is served for at most ``key_ttl_s`` seconds after
  it was read (past half of that it is re-read in the background, so requests seldom wait); a revocation this
  process sends itself (cloud/signer_keys.record_revocation) drops it at once (``forget_key``). A revocation
  made elsewhere (another replica, the enterprise on chain directly) is seen within the TTL;
* the checkpoint count only grows, so a stale count is a lower bound: newer anchors look pending (which need
  keys active now) until it is re-read. It is re-read as soon as our own database says a newer checkpoint is
  anchored (a hint to re-read the chain, never a value taken from the database; every replica's anchoring
  leader writes there), else after ``count_ttl_s``.

Anything else (signer lists, checkpoints not yet final) goes to the chain every request. Within one request
``proof_verify.CachedChainReader`` still answers each read once, so a request sees one consistent chain.

Stores are keyed by (chain id, registry address) inside one chain connection: two embedded EVMs in one process
may well share both, so a connection never sees another's facts.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from carbontrace_protocol import proof_verify as pv
from carbontrace_protocol.ids import KEY_REVOKED

if TYPE_CHECKING:
    from cloud.chain import RegistryContract
    from cloud.settings import Settings

Clock = Callable[[], float]


@dataclass(frozen=True)
class CachePolicy:
    depth: int = 0  # blocks that must follow an anchor before its checkpoint is final
    key_ttl_s: float = 2.0
    count_ttl_s: float = 30.0


@dataclass
class RegistryFacts:
    """The settled answers of one registry on one chain; thread-safe (request threads share it)."""

    chain_id: int
    registry: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    has_code: bool = False
    final_count: int = 0  # checkpoints 0 .. final_count-1 are final
    count: int = 0
    count_read_at: float = -1e18
    checkpoints: dict[int, pv.ChainCheckpoint] = field(default_factory=dict)
    keys: dict[bytes, tuple[float, pv.ChainKey]] = field(default_factory=dict)  # fingerprint -> (read at, state)
    refreshing: set[bytes] = field(default_factory=set)  # keys being re-read in the background
    # the registry's link (registry_chain.RegistryLink) and when it was read: kept for good once it names a
    # successor (a seal is final), else for count_ttl_s like the count
    link: Any = None
    link_read_at: float = -1e18


_STORES: weakref.WeakKeyDictionary[object, dict[tuple[int, str], RegistryFacts]] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


_CHAIN_IDS: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()


def chain_id_of(connection: object, read: Callable[[], int]) -> int:
    """The chain id behind a connection, read once (a node does not change chains under one connection)."""
    with _STORES_LOCK:
        known = _CHAIN_IDS.get(connection)
    if known is None:
        known = read()
        with _STORES_LOCK:
            _CHAIN_IDS[connection] = known
    return known


def facts_for(connection: object, chain_id: int, registry: str) -> RegistryFacts:
    """The store of ``registry`` on chain ``chain_id`` as seen through ``connection`` (a chain client object)."""
    key = (chain_id, registry.lower())
    with _STORES_LOCK:
        stores = _STORES.setdefault(connection, {})
        if key not in stores:
            stores[key] = RegistryFacts(chain_id, registry.lower())
        return stores[key]


def forget_key(fingerprint: bytes) -> None:
    """Drop a key's state from every store: this process has just revoked it on chain."""
    with _STORES_LOCK:
        every = [facts for stores in _STORES.values() for facts in stores.values()]
    for facts in every:
        with facts.lock:
            facts.keys.pop(bytes(fingerprint), None)


class FinalFactsReader:
    """A ChainReader that answers settled questions from a RegistryFacts store and reads the chain for the rest.

    ``count_at_depth(depth)`` reads the checkpoint count ``depth`` blocks back (only called when depth > 0);
    ``anchored_hint`` is how many checkpoints our database says are anchored (0: no hint)."""

    def __init__(
        self,
        inner: pv.ChainReader,
        facts: RegistryFacts,
        policy: CachePolicy,
        count_at_depth: Callable[[int], int] | None = None,
        anchored_hint: int = 0,
        clock: Clock = time.monotonic,
        facts_of: Callable[[str], RegistryFacts] | None = None,
        link_ttl: bool = True,
    ) -> None:
        self.facts_of = facts_of  # the store of another registry of the chain of registries
        # False for a predecessor read through a link: its successor must be read, not remembered as absent
        self.link_ttl = link_ttl
        self.inner = inner
        self.facts = facts
        self.policy = policy
        self.count_at_depth = count_at_depth
        self.anchored_hint = anchored_hint
        self.clock = clock

    def chain_id(self) -> int:
        return self.facts.chain_id  # the store is keyed by it: whoever built the store read it from the chain

    def has_code(self) -> bool:
        if self.facts.has_code:
            return True
        present = self.inner.has_code()
        if present and self.policy.depth == 0:  # code deployed at depth 0 is final; else ask each time
            self.facts.has_code = True
        return present

    def checkpoint_count(self) -> int:
        now = self.clock()
        facts = self.facts
        with facts.lock:
            fresh = now - facts.count_read_at < self.policy.count_ttl_s and facts.count >= self.anchored_hint
            if fresh:
                return facts.count
        count = self.inner.checkpoint_count()
        final = count if self.policy.depth == 0 else self._count_at_depth()
        with facts.lock:
            facts.count, facts.count_read_at = count, now
            facts.final_count = max(facts.final_count, min(final, count))
        return count

    def _count_at_depth(self) -> int:
        return self.count_at_depth(self.policy.depth) if self.count_at_depth is not None else 0

    def checkpoint(self, seq: int) -> pv.ChainCheckpoint:
        facts = self.facts
        with facts.lock:
            known = facts.checkpoints.get(seq)
        if known is not None:
            return known
        onchain = self.inner.checkpoint(seq)
        with facts.lock:
            if seq < facts.final_count:
                facts.checkpoints[seq] = onchain
        return onchain

    def key(self, fingerprint: bytes) -> pv.ChainKey:
        fingerprint = bytes(fingerprint)
        now = self.clock()
        facts = self.facts
        with facts.lock:
            known = facts.keys.get(fingerprint)
        if known is not None:
            read_at, state = known
            age = now - read_at
            if state.state == KEY_REVOKED:
                return state
            if age < self.policy.key_ttl_s:
                if age >= self.policy.key_ttl_s / 2:
                    self._refresh_ahead(fingerprint)
                return state
        return self._read_key(fingerprint)

    def _read_key(self, fingerprint: bytes) -> pv.ChainKey:
        read_at = self.clock()  # taken before the read: the answer is at least this fresh
        state = self.inner.key(fingerprint)
        with self.facts.lock:
            kept = self.facts.keys.get(fingerprint)
            if kept is None or kept[0] <= read_at:
                self.facts.keys[fingerprint] = (read_at, state)
        return state

    def _refresh_ahead(self, fingerprint: bytes) -> None:
        """Past half its TTL, a kept key is re-read in the background, so a request seldom waits for the chain;
        the TTL still bounds what is served (a failed refresh leaves the old entry to expire)."""
        with self.facts.lock:
            if fingerprint in self.facts.refreshing:
                return
            self.facts.refreshing.add(fingerprint)

        def refresh() -> None:
            try:
                self._read_key(fingerprint)
            except Exception:  # the next request past the TTL reads the chain itself and reports the failure
                pass
            finally:
                with self.facts.lock:
                    self.facts.refreshing.discard(fingerprint)

        threading.Thread(target=refresh, name="chain-facts-refresh", daemon=True).start()

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        return self.inner.signers_of(enterprise_id, kind)  # grows with every registration: always read

    def link(self) -> Any:
        """The registry's link: the predecessor part is immutable, a successor once named is final."""
        from carbontrace_protocol.registry_chain import GENESIS

        now, facts = self.clock(), self.facts
        with facts.lock:
            known = facts.link
            fresh = self.link_ttl and now - facts.link_read_at < self.policy.count_ttl_s
            if known is not None and (known.successor is not None or fresh):
                return known
        read = getattr(self.inner, "link", None)
        link = GENESIS if read is None else read()
        with facts.lock:
            facts.link, facts.link_read_at = link, now
        return link

    def at(self, registry: str) -> FinalFactsReader:
        inner: Any = self.inner
        facts = self.facts_of(registry) if self.facts_of is not None else RegistryFacts(self.facts.chain_id, registry)
        return FinalFactsReader(
            inner.at(registry), facts, self.policy, clock=self.clock, facts_of=self.facts_of, link_ttl=False
        )


def policy_of(settings: Settings) -> CachePolicy:
    return CachePolicy(settings.confirmation_depth, settings.trace_key_ttl_s, settings.trace_count_ttl_s)


def count_at_depth(registry: RegistryContract) -> Callable[[int], int]:
    """The registry's checkpoint count as of ``depth`` blocks before the newest one."""

    def read(depth: int) -> int:
        block = max(0, registry.chain.block_number() - depth)
        return int(registry.contract.functions.checkpointCount().call(block_identifier=block))

    return read
