"""Per-device sequence bookkeeping over plain data: duplicates, conflicts, replays and gaps. Pure.

Each device numbers its readings. The gateway remembers, per device, the first and highest sequence
number it accepted and the ranges in between it never received (gaps). A late reading that falls in a
gap fills it; anything below the first accepted number, or at a number already accounted for, is a
replay unless its bytes are exactly those already stored (then it is a harmless redelivery).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCEPT = "accept"
DUPLICATE = "duplicate"
SEQ_CONFLICT = "seq_conflict"
REPLAY = "replay"


@dataclass(frozen=True)
class SeqState:
    first_seq: int
    max_seq: int


@dataclass(frozen=True)
class SeqDecision:
    verdict: str
    state: SeqState | None = None  # the device's state after accepting
    new_gap: tuple[int, int] | None = None  # a range [lo, hi] now known to be missing
    filled_gap: tuple[int, int] | None = None  # the gap this reading falls in (to be split)


def decide(
    state: SeqState | None,
    seq: int,
    digest: bytes,
    stored_digest: bytes | None,
    containing_gap: tuple[int, int] | None,
) -> SeqDecision:
    """What to do with a verified reading of sequence number ``seq``.

    ``stored_digest`` is the digest of the reading already held under (device, seq), if any;
    ``containing_gap`` the recorded missing range that contains ``seq``, if any.
    """
    if stored_digest is not None:
        return SeqDecision(DUPLICATE if stored_digest == digest else SEQ_CONFLICT)
    if state is None:
        return SeqDecision(ACCEPT, SeqState(seq, seq))
    if seq > state.max_seq:
        gap = (state.max_seq + 1, seq - 1) if seq > state.max_seq + 1 else None
        return SeqDecision(ACCEPT, SeqState(state.first_seq, seq), new_gap=gap)
    if containing_gap is not None:
        return SeqDecision(ACCEPT, state, filled_gap=containing_gap)
    return SeqDecision(REPLAY)


def split_gap(gap: tuple[int, int], seq: int) -> list[tuple[int, int]]:
    """The missing ranges left after ``seq`` arrives inside ``gap``."""
    low, high = gap
    if not low <= seq <= high:
        raise ValueError(f"{seq} is not in the gap {gap}")
    left = [(low, seq - 1)] if seq > low else []
    right = [(seq + 1, high)] if seq < high else []
    return left + right


def gap_size(gaps: list[tuple[int, int]]) -> int:
    return sum(high - low + 1 for low, high in gaps)
