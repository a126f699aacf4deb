"""Per-device sequence bookkeeping over plain data: duplicates, conflicts, replays and gaps. Pure.

Each device numbers its readings. The gateway remembers, per device, the first and highest sequence
number it accepted and the ranges in between it never received (gaps). A late reading that falls in a
gap fills it; anything below the first accepted number, or at a number already accounted for, is a
replay unless its bytes are exactly those already stored (then it is a harmless redelivery).

With several ingest workers (``first_open`` is asked only then), the first accepted number is provisional
while that reading is still open (in no sealed batch): workers sharing a subscription commit in any order,
so a device's seq 1 may land before its seq 0. Until the first reading is sealed nothing of the device has
left the spool, so a lower number extends the device's range downwards (with the gap between) instead of
being a replay; once sealed, it is one. One process commits in arrival order, so there it is a replay.
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
    first_open: bool = False,
) -> SeqDecision:
    """What to do with a verified reading of sequence number ``seq``.

    ``stored_digest`` is the digest of the reading already held under (device, seq), if any;
    ``containing_gap`` the recorded missing range that contains ``seq``, if any; ``first_open`` whether
    the device's first accepted reading is still in no sealed batch (only asked when ``seq`` is below it).
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
    if seq < state.first_seq and first_open:
        gap = (seq + 1, state.first_seq - 1) if seq + 1 < state.first_seq else None
        return SeqDecision(ACCEPT, SeqState(seq, state.max_seq), new_gap=gap)
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
