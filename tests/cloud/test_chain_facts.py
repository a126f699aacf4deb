"""cloud/chain_facts.py: what it keeps across requests, for whom, and for how long.

A fake chain counts its reads. A checkpoint is kept only for the registry and chain it was read from (and only
once final); an active key's state only for the TTL, unless this process revoked it (then dropped at once); a
revoked key's state for good; the checkpoint count until the TTL or our own anchoring record says it is behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from carbontrace_protocol import proof_verify as pv
from carbontrace_protocol.ids import KEY_ACTIVE, KEY_REVOKED, SIGNER_DEVICE
from cloud import chain_facts
from cloud.chain_facts import CachePolicy, FinalFactsReader, facts_for

FINGERPRINT = b"\x01" * 32
DEFAULT_POLICY = CachePolicy()
ACTIVE = pv.ChainKey(KEY_ACTIVE, SIGNER_DEVICE, b"d" * 32, b"e" * 32, 0, None)


@dataclass
class FakeChain:
    count: int = 3
    count_at_depth: int = 3
    key_state: pv.ChainKey = ACTIVE
    reads: list[str] = field(default_factory=list)

    def chain_id(self) -> int:
        return 1

    def has_code(self) -> bool:
        return True

    def checkpoint_count(self) -> int:
        self.reads.append("count")
        return self.count

    def checkpoint(self, seq: int) -> pv.ChainCheckpoint:
        self.reads.append(f"checkpoint {seq}")
        return pv.ChainCheckpoint(10 * (seq + 1), bytes([seq]) * 32, f"cid-{seq}")

    def key(self, fingerprint: bytes) -> pv.ChainKey:
        self.reads.append("key")
        return self.key_state

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        return []


class Connection:
    """Stands for a chain client object (stores are weakly keyed by it)."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reader(chain: FakeChain, connection: Connection, chain_id: int = 1, registry: str = "0xAAAA",
           policy: CachePolicy = DEFAULT_POLICY, clock: Clock | None = None, hint: int = 0) -> FinalFactsReader:
    return FinalFactsReader(chain, facts_for(connection, chain_id, registry), policy,
                            count_at_depth=lambda depth: chain.count_at_depth, anchored_hint=hint,
                            clock=clock or Clock())


def test_a_final_checkpoint_is_read_once_and_served_only_for_its_own_registry_and_chain() -> None:
    connection, chain = Connection(), FakeChain()
    first = reader(chain, connection)
    first.checkpoint_count()
    assert first.checkpoint(1) == reader(chain, connection).checkpoint(1)
    assert chain.reads == ["count", "checkpoint 1"]  # the second request did not read the chain

    for other in (reader(chain, connection, registry="0xBBBB"),  # another registry on the same chain
                  reader(chain, connection, chain_id=2),  # the same address on another chain
                  reader(chain, Connection())):  # another connection (two embedded EVMs share id and address)
        chain.reads.clear()
        other.checkpoint_count()
        other.checkpoint(1)
        assert chain.reads == ["count", "checkpoint 1"]


def test_a_checkpoint_not_yet_at_final_depth_is_read_every_time() -> None:
    connection, chain = Connection(), FakeChain(count=3, count_at_depth=1)
    policy = CachePolicy(depth=2)
    first = reader(chain, connection, policy=policy)
    first.checkpoint_count()
    first.checkpoint(0)
    first.checkpoint(2)
    chain.reads.clear()
    again = reader(chain, connection, policy=policy)
    again.checkpoint(0)  # final (below the count two blocks back): kept
    again.checkpoint(2)  # could still be reorged away: read again
    assert chain.reads == ["checkpoint 2"]


def test_the_count_is_reread_after_its_ttl_or_when_our_anchoring_record_is_ahead() -> None:
    connection, chain, clock = Connection(), FakeChain(count=3), Clock()
    assert reader(chain, connection, clock=clock).checkpoint_count() == 3
    chain.count = 4
    assert reader(chain, connection, clock=clock).checkpoint_count() == 3  # within the TTL: a lower bound
    assert reader(chain, connection, clock=clock, hint=4).checkpoint_count() == 4  # our DB anchored seq 3
    chain.count = 5
    clock.now += CachePolicy().count_ttl_s
    assert reader(chain, connection, clock=clock).checkpoint_count() == 5


def test_a_key_revoked_elsewhere_is_seen_after_the_ttl_and_one_revoked_here_at_once() -> None:
    connection, chain, clock = Connection(), FakeChain(), Clock()
    assert reader(chain, connection, clock=clock).key(FINGERPRINT).state == KEY_ACTIVE
    chain.key_state = replace(ACTIVE, state=KEY_REVOKED, revoked_at=2)
    assert reader(chain, connection, clock=clock).key(FINGERPRINT).state == KEY_ACTIVE  # inside the TTL
    clock.now += CachePolicy().key_ttl_s
    assert reader(chain, connection, clock=clock).key(FINGERPRINT).state == KEY_REVOKED

    chain.key_state = ACTIVE
    other = b"\x02" * 32
    assert reader(chain, connection, clock=clock).key(other).state == KEY_ACTIVE
    chain.key_state = replace(ACTIVE, state=KEY_REVOKED, revoked_at=2)
    chain_facts.forget_key(other)  # what cloud/signer_keys.record_revocation does after our revoke transaction
    assert reader(chain, connection, clock=clock).key(other).state == KEY_REVOKED


def test_a_revoked_key_is_kept_for_good() -> None:
    connection, clock = Connection(), Clock()
    chain = FakeChain(key_state=replace(ACTIVE, state=KEY_REVOKED, revoked_at=2))
    reader(chain, connection, clock=clock).key(FINGERPRINT)
    clock.now += 10 * CachePolicy().key_ttl_s
    chain.reads.clear()
    assert reader(chain, connection, clock=clock).key(FINGERPRINT).state == KEY_REVOKED
    assert chain.reads == []
