"""The chain of registries: a verifier pinned to one registry follows its predecessor (and successor) links.

A registry is never upgraded in place; a successor is deployed that records its predecessor's address and final
checkpoint (count, tree size, commitment), and the predecessor is sealed naming it (contracts/
CarbonTraceRegistry.sol, "Succession"). Sequence numbers run on across the hand-over, so one log spans every
registry of the chain: checkpoint ``seq`` lives on the newest registry whose first sequence (its predecessor's
checkpoint count) is at most ``seq``.

``follow(reader, pinned, named)`` walks the links from the pinned registry (at most MAX_DEPTH of them) until it
meets the registry the bundle names, checking every link both ways on the chain itself, and returns
``RegistryChain``: a ChainReader over all of them that routes each checkpoint to the registry holding it and
checks every carried key record and signer list against the predecessor's. A link or carried record that does
not hold fails at step ``registry_chain`` with a reason (docs/proof-bundle.md, "The chain of registries"):

  successor_not_named   the predecessor never named this registry as its successor (not sealed for it)
  predecessor_forged    the final checkpoint this registry records is not the predecessor's last one
  anchored_after_seal   the predecessor holds checkpoints past the one recorded at the hand-over
  predecessor_no_code   no contract at the predecessor's address
  too_deep              more than MAX_DEPTH links without meeting the registry the bundle names
  carried_key_differs   a key record carried over disagrees with the predecessor's history
  signer_list_differs   an enterprise's device or gateway list does not extend the predecessor's

A reader that cannot tell links (no ``link`` method) is a single registry with no predecessor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from carbontrace_protocol.anchor_commitment import checkpoint_commitment
from carbontrace_protocol.ids import KEY_ACTIVE, KEY_NONE, KEY_REVOKED
from carbontrace_protocol.proof_verify import CheckFailed

STEP = "registry_chain"
MAX_DEPTH = 8  # links followed at most: a migration is rare, a loop or a long forged chain must end
_ZERO32 = bytes(32)


class LinkFailed(CheckFailed):
    """A link of the chain of registries does not hold; ``reason`` is one of the module's reason names."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(STEP, f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class RegistryLink:
    """What a registry says of its place in the chain (registryLink()); addresses normalized, None for zero."""

    predecessor: str | None
    predecessor_checkpoint_count: int  # the first sequence anchored on this registry
    predecessor_tree_size: int
    predecessor_commitment: bytes
    successor: str | None


GENESIS = RegistryLink(None, 0, 0, _ZERO32, None)


def address_or_none(value: str) -> str | None:
    """A link's address as the bundle writes addresses (0x + 40 lowercase hex), None for the zero address."""
    lowered = str(value).lower()
    return None if int(lowered, 16) == 0 else lowered


@runtime_checkable
class LinkedReader(Protocol):
    """A ChainReader that can also read its registry's link and make a reader of another registry."""

    def link(self) -> RegistryLink: ...

    def at(self, registry: str) -> Any: ...


def link_of(reader: Any) -> RegistryLink:
    return reader.link() if isinstance(reader, LinkedReader) else GENESIS


@dataclass
class Member:
    address: str
    reader: Any  # a ChainReader of this registry
    link: RegistryLink

    @property
    def base(self) -> int:
        return self.link.predecessor_checkpoint_count


def check_link(newer: Member, older_address: str, older: Any) -> Member:
    """The link newer → older holds both ways; returns the older member."""
    if not older.has_code():
        raise LinkFailed(
            "predecessor_no_code", f"no contract at {older_address}, the predecessor {newer.address} names"
        )
    older_link = link_of(older)
    if older_link.successor != newer.address:
        raise LinkFailed(
            "successor_not_named",
            f"{older_address} names successor {older_link.successor or 'none'}, not {newer.address}: it was never "
            "sealed for it",
        )
    count, recorded = older.checkpoint_count(), newer.link.predecessor_checkpoint_count
    if count > recorded:
        raise LinkFailed(
            "anchored_after_seal",
            f"{older_address} holds {count} checkpoints; {newer.address} recorded {recorded} at the hand-over",
        )
    if count < recorded:
        raise LinkFailed("predecessor_forged", f"{newer.address} records {recorded} checkpoints of {older_address}, "
                         f"which holds {count}")
    if count == 0:
        final = (0, _ZERO32)
    else:
        last = older.checkpoint(count - 1)
        final = (last.tree_size, checkpoint_commitment(last.tree_size, last.root, last.cid))
    if final != (newer.link.predecessor_tree_size, newer.link.predecessor_commitment):
        raise LinkFailed(
            "predecessor_forged",
            f"the final checkpoint {newer.address} records (size {newer.link.predecessor_tree_size}) is not "
            f"checkpoint {count - 1} of {older_address} (size {final[0]})",
        )
    return Member(older_address, older, older_link)


def follow(reader: Any, pinned: str, named: str, max_depth: int = MAX_DEPTH) -> RegistryChain:
    """The chain of registries from ``pinned`` that contains ``named``: back through predecessors, and if the
    bundle names a newer registry, forward through successors (each such link checked the same way). LinkFailed
    if a link does not hold; NotLinked if ``named`` is not within ``max_depth`` links."""
    top = Member(pinned, reader, link_of(reader))
    members = [top]
    # forward: a bundle made after a hand-over names the successor of the pinned registry
    if named != pinned:
        found = _forward(top, named, max_depth)
        if found is not None:
            members = found + members
    while members[-1].link.predecessor is not None:
        if len(members) > max_depth:
            raise LinkFailed("too_deep", f"more than {max_depth} registries in the chain from {pinned}")
        newer = members[-1]
        previous = newer.link.predecessor
        assert previous is not None  # the loop's condition
        members.append(check_link(newer, previous, newer.reader.at(previous)))
    if named not in {m.address for m in members}:
        raise NotLinked(named, pinned)
    return RegistryChain(members)


def _forward(top: Member, named: str, max_depth: int) -> list[Member] | None:
    """The successors of ``top`` up to ``named``, newest first, each link checked; None if ``named`` is not one."""
    newer_first: list[Member] = []
    current = top
    for _ in range(max_depth):
        nxt = current.link.successor
        if nxt is None:
            return None
        reader = current.reader.at(nxt)
        if not reader.has_code():
            raise LinkFailed("predecessor_no_code", f"no contract at {nxt}, the successor {current.address} names")
        member = Member(nxt, reader, link_of(reader))
        if member.link.predecessor != current.address:
            raise LinkFailed(
                "predecessor_forged", f"{nxt}, named successor by {current.address}, names predecessor "
                f"{member.link.predecessor or 'none'}"
            )
        check_link(member, current.address, current.reader)
        newer_first.insert(0, member)
        if nxt == named:
            return newer_first
        current = member
    return None


class NotLinked(Exception):
    def __init__(self, named: str, pinned: str) -> None:
        super().__init__(f"registry {named} is not in the chain of registries of the pinned {pinned}")
        self.named = named
        self.pinned = pinned


class RegistryChain:
    """A ChainReader over a chain of registries, newest first, every link already checked."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.newest = members[0]

    @property
    def linked(self) -> bool:
        return len(self.members) > 1

    def describe(self) -> str:
        spans = []
        for m in self.members:
            spans.append(f"{m.address} from checkpoint {m.base}")
        return "registries, newest first, each link checked both ways: " + "; ".join(spans)

    # -- ChainReader --
    def chain_id(self) -> int:
        return int(self.newest.reader.chain_id())

    def has_code(self) -> bool:
        return bool(self.newest.reader.has_code())

    def checkpoint_count(self) -> int:
        return int(self.newest.reader.checkpoint_count())

    def checkpoint(self, seq: int) -> Any:
        """Checkpoint ``seq`` from the registry it was anchored on."""
        for member in self.members:
            if seq >= member.base:
                return member.reader.checkpoint(seq)
        return self.members[-1].reader.checkpoint(seq)

    def key(self, fingerprint: bytes) -> Any:
        """The newest registry's record of a key, each older registry's record checked against it: a carried
        record keeps its history, a key the older registry holds is carried, and one it never held is new."""
        records = [m.reader.key(fingerprint) for m in self.members]
        for i in range(len(self.members) - 1):
            newer, older = records[i], records[i + 1]
            problem = _carried_problem(newer, older, self.members[i].base)
            if problem:
                raise LinkFailed(
                    "carried_key_differs",
                    f"key {bytes(fingerprint).hex()[:16]}… on {self.members[i].address} {problem} "
                    f"{self.members[i + 1].address}'s record",
                )
        return records[0]

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        lists = [list(m.reader.signers_of(enterprise_id, kind)) for m in self.members]
        for i in range(len(lists) - 1):
            if lists[i][: len(lists[i + 1])] != lists[i + 1]:
                raise LinkFailed(
                    "signer_list_differs",
                    f"{self.members[i].address}'s signer list of an enterprise does not begin with "
                    f"{self.members[i + 1].address}'s",
                )
        return lists[0]

    def link(self) -> RegistryLink:
        return self.newest.link

    def at(self, registry: str) -> Any:
        return self.newest.reader.at(registry)


def _carried_problem(newer: Any, older: Any, base: int) -> str | None:
    if older.state == KEY_NONE:
        # never held before the hand-over: unknown on both, or registered on the newer one since
        if newer.state == KEY_NONE or newer.active_from >= base:
            return None
        return "claims a history before the hand-over that is not in"
    if newer.state == KEY_NONE:
        return "was dropped: it is in"
    same = (newer.kind, newer.signer_id, newer.enterprise_id, newer.active_from) == (
        older.kind, older.signer_id, older.enterprise_id, older.active_from)
    if not same:
        return "is not the key of"
    if older.state == KEY_REVOKED:
        return None if (newer.state, newer.revoked_at) == (KEY_REVOKED, older.revoked_at) else "is unrevoked against"
    if older.state == KEY_ACTIVE and (newer.state == KEY_ACTIVE or (newer.revoked_at or 0) >= base):
        return None
    return "is revoked before the hand-over against"
