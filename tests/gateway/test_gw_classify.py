"""The pure core: message classification, sequence/gap bookkeeping, window math, batch making. No I/O."""

from __future__ import annotations

import os

import pytest
from gw_helpers import SITE, Device, topic
from hypothesis import given, settings
from hypothesis import strategies as st

from carbontrace_protocol import cbor
from carbontrace_protocol.batch import ZERO_HASH, decode_batch
from carbontrace_protocol.batch_verify import BatchRejected, verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading
from edge_gateway.batcher import make_batch, next_baselines, renumber
from edge_gateway.classify import (
    UNREGISTERED,
    DeviceEntry,
    Rejected,
    Verified,
    classify_message,
    parse_topic,
)
from edge_gateway.keys import public_key_of
from edge_gateway.sequence import ACCEPT, DUPLICATE, REPLAY, SEQ_CONFLICT, SeqState, decide, gap_size, split_gap
from edge_gateway.spool import OpenReading
from edge_gateway.windows import assign_window, backoff_delay, window_due, window_start

NOW = 1_780_000_000
A = Device("dev-a", seed=b"a" * 32)
B = Device("dev-b", seed=b"b" * 32)
R = Device("dev-r", seed=b"r" * 32)
REGISTRY = {
    "dev-a": DeviceEntry("dev-a", A.public, "active"),
    "dev-b": DeviceEntry("dev-b", B.public, "active"),
    "dev-r": DeviceEntry("dev-r", R.public, "revoked"),
}
GOOD = A.signed(7, timestamp=NOW)


def classify(topic_: str, payload: bytes, now: int = NOW) -> Verified | Rejected:
    return classify_message(topic_, payload, SITE, REGISTRY.get, now, 300)


def test_a_good_reading_is_verified() -> None:
    outcome = classify(topic("dev-a"), GOOD)
    assert isinstance(outcome, Verified)
    assert (outcome.reading.device_id, outcome.reading.seq) == ("dev-a", 7)
    assert outcome.signed == GOOD and len(outcome.digest) == 32


@pytest.mark.parametrize(
    ("topic_", "payload", "reason", "label"),
    [
        ("carbontrace/v1/site-a/dev-a/status", GOOD, "bad_topic", UNREGISTERED),
        (topic("dev-a", site="site-b"), GOOD, "wrong_site", "dev-a"),
        (topic("dev-a"), b"\xff\x00garbage", "malformed_cbor", "dev-a"),
        (topic("dev-a"), GOOD[:-9], "malformed_cbor", "dev-a"),
        (topic("dev-a"), cbor.encode({"not": "cose"}), "malformed_cose", "dev-a"),
        (topic("dev-b"), GOOD, "topic_mismatch", "dev-b"),
        (topic("dev-x"), Device("dev-x").signed(1, timestamp=NOW), "unknown_device", UNREGISTERED),
        (topic("dev-r"), R.signed(1, timestamp=NOW), "revoked_device", "dev-r"),
        (topic("dev-a"), Device("dev-a").signed(1, timestamp=NOW), "bad_signature", "dev-a"),
        (topic("dev-a"), A.signed(1, timestamp=NOW - 301), "clock_skew", "dev-a"),
        (topic("dev-a"), A.signed(1, timestamp=NOW + 301), "clock_skew", "dev-a"),
    ],
)
def test_each_defect_is_rejected_with_its_reason(topic_: str, payload: bytes, reason: str, label: str) -> None:
    outcome = classify(topic_, payload)
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.device_label) == (reason, label)


def test_an_unsynced_clock_is_not_a_skew_but_format_1_unsynced_is_refused() -> None:
    unsynced = Reading("dev-a", 1, None, "1.0.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=600, boot=3, up=3)
    assert isinstance(classify(topic("dev-a"), sign_reading(unsynced, A.key)), Verified)
    # format 1 put seconds since boot in the time field, with nothing to re-time it by: it would be stored at 1970
    outcome = classify(topic("dev-a"), A.signed(1, timestamp=3, flags=FLAG_TIME_NOT_SYNCED))
    assert isinstance(outcome, Rejected) and outcome.reason == "unsynced_without_boot"


def test_a_flipped_signature_bit_is_a_bad_signature() -> None:
    tampered = bytearray(GOOD)
    tampered[-1] ^= 1
    outcome = classify(topic("dev-a"), bytes(tampered))
    assert isinstance(outcome, Rejected) and outcome.reason == "bad_signature"


def test_topic_parsing() -> None:
    assert parse_topic("carbontrace/v1/s/d/reading") == ("s", "d")
    for bad in ("carbontrace/v1/s/d", "carbontrace/v2/s/d/reading", "carbontrace/v1//d/reading", "x/v1/s/d/reading"):
        assert parse_topic(bad) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes_never_escape_as_exceptions(payload: bytes) -> None:
    outcome = classify(topic("dev-a"), payload)
    assert isinstance(outcome, Rejected)
    assert outcome.reason and outcome.reason != "malformed_message", outcome.detail


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(min_value=1, max_value=255),
       st.integers(min_value=0, max_value=len(GOOD)))
def test_fuzz_mutated_and_truncated_readings_are_rejected(index: int, xor: int, cut: int) -> None:
    mutated = bytearray(GOOD)
    mutated[index] ^= xor
    for payload in (bytes(mutated), GOOD[:cut] if cut < len(GOOD) else GOOD + b"\x00"):
        outcome = classify(topic("dev-a"), payload)
        assert isinstance(outcome, Rejected), payload.hex()


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64) + 1, 2**64 - 1) | st.binary(max_size=20) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.integers(-5, 5) | st.text(max_size=3),
                                                                       children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(cbor_values)
def test_fuzz_well_formed_cbor_of_any_shape_is_rejected_with_a_typed_reason(value: object) -> None:
    for payload in (cbor.encode(value), cbor.encode(cbor.Tag(18, value))):
        outcome = classify(topic("dev-a"), payload)
        assert isinstance(outcome, Rejected)
        assert outcome.reason != "malformed_message", outcome.detail


# -- sequence bookkeeping ---------------------------------------------------------------------------

D1, D2 = b"1" * 32, b"2" * 32


def test_sequence_decisions() -> None:
    assert decide(None, 5, D1, None, None) == decide(None, 5, D1, None, None)
    first = decide(None, 5, D1, None, None)
    assert first.verdict == ACCEPT and first.state == SeqState(5, 5) and first.new_gap is None
    nxt = decide(SeqState(5, 5), 6, D1, None, None)
    assert nxt.state == SeqState(5, 6) and nxt.new_gap is None
    jump = decide(SeqState(5, 6), 10, D1, None, None)
    assert jump.state == SeqState(5, 10) and jump.new_gap == (7, 9)
    fill = decide(SeqState(5, 10), 8, D1, None, (7, 9))
    assert fill.verdict == ACCEPT and fill.filled_gap == (7, 9) and fill.state == SeqState(5, 10)
    assert decide(SeqState(5, 10), 6, D1, D1, None).verdict == DUPLICATE
    assert decide(SeqState(5, 10), 6, D2, D1, None).verdict == SEQ_CONFLICT
    assert decide(SeqState(5, 10), 3, D1, None, None).verdict == REPLAY
    # below a first reading that is still open (parallel ingest workers committed seq 5 before seq 3)
    below = decide(SeqState(5, 10), 3, D1, None, None, first_open=True)
    assert below.verdict == ACCEPT and below.state == SeqState(3, 10) and below.new_gap == (4, 4)
    just_below = decide(SeqState(5, 10), 4, D1, None, None, first_open=True)
    assert just_below.state == SeqState(4, 10) and just_below.new_gap is None


def test_gap_splitting() -> None:
    assert split_gap((7, 9), 8) == [(7, 7), (9, 9)]
    assert split_gap((7, 9), 7) == [(8, 9)]
    assert split_gap((7, 7), 7) == []
    with pytest.raises(ValueError):
        split_gap((7, 9), 10)
    assert gap_size([(7, 9), (12, 12)]) == 4


@given(st.permutations(list(range(30))), st.integers(min_value=1, max_value=29), st.booleans())
def test_gaps_close_exactly_when_every_reading_has_arrived(order: list[int], keep: int, first_open: bool) -> None:
    """Any arrival order of any subset: missing ranges = exactly the numbers not yet seen in [first, max];
    with the first reading still open, nothing is a replay (every number ends up accepted or missing)."""
    state: SeqState | None = None
    gaps: list[tuple[int, int]] = []
    held: set[int] = set()
    for seq in order[:keep]:
        containing = next((g for g in gaps if g[0] <= seq <= g[1]), None)
        decision = decide(state, seq, D1, None, containing, first_open)
        if decision.verdict != ACCEPT:
            assert not first_open
            assert decision.verdict == REPLAY and state is not None and seq < state.first_seq
            continue
        state = decision.state
        held.add(seq)
        if decision.new_gap:
            gaps.append(decision.new_gap)
        if decision.filled_gap:
            gaps.remove(decision.filled_gap)
            gaps.extend(split_gap(decision.filled_gap, seq))
    assert state is not None
    missing = {s for lo, hi in gaps for s in range(lo, hi + 1)}
    assert missing == set(range(state.first_seq, state.max_seq + 1)) - held
    if first_open:
        assert held == set(order[:keep])


# -- windows and retries ----------------------------------------------------------------------------


def test_window_math() -> None:
    assert window_start(1_000_899, 900) == 1_000_800
    assert assign_window(1_000_899, 900, 0) == 1_000_800
    assert assign_window(1_000_899, 900, 1_001_700) == 1_001_700  # clock stepped back: never a sealed window
    assert not window_due(1_000_800, 900, 1_001_699)
    assert window_due(1_000_800, 900, 1_001_700)


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert backoff_delay(0, 1.0, 300.0, 0.0) == 0.5
    assert backoff_delay(0, 1.0, 300.0, 0.999) < 1.0
    assert backoff_delay(3, 1.0, 300.0, 0.5) == 6.0
    assert backoff_delay(50, 1.0, 300.0, 0.999) <= 300.0
    assert backoff_delay(50, 1.0, 300.0, 0.0) == 150.0


# -- batches ------------------------------------------------------------------------------------------


def test_made_batches_verify_and_carry_energy_baselines_across_batches() -> None:
    gw_key = 0x1234567890ABCDEF1234567890ABCDEF
    gw_public = public_key_of(gw_key)
    factor = get_factor()
    keys = {"dev-a": A.public, "dev-b": B.public}
    cloud_baselines: dict[str, tuple[int, int, int | None]] = {}
    baselines: dict[str, tuple[int, int, int | None]] = {}
    prev = ZERO_HASH
    for batch_seq, seqs in enumerate([range(0, 4), range(4, 9)]):
        opened = [OpenReading(d.device_id, s, d.signed(s, timestamp=NOW)) for d in (A, B) for s in reversed(seqs)]
        batch, moved = make_batch(gw_key, "gw-1", SITE, (NOW, NOW + 900), 60, factor, opened, baselines,
                                  batch_seq, prev, NOW + 900)
        verified = verify_batch(batch.encode(), gw_public, keys.get,
                                lambda i: factor if i == factor.id else None, cloud_baselines.get)
        assert [r.reading.seq for r in verified.readings] == [*seqs, *seqs]  # sorted by device, then seq
        energy = {agg["device"]: agg["energy"]["delta_wh"] for _, agg in verified.aggregates}
        assert energy == {"dev-a": 5 * (len(seqs) - 1 + batch_seq), "dev-b": 5 * (len(seqs) - 1 + batch_seq)}
        baselines.update(moved)
        cloud_baselines.update(moved)
        prev = batch.hash
    # the baseline keeps its measurement time: the next batch's first energy run starts there
    assert baselines == {"dev-a": (8, 1040, NOW), "dev-b": (8, 1040, NOW)}
    # a renumbered batch is the same content under a new number, and it verifies
    again = renumber(gw_key, decode_batch(batch.encode()), 7, ZERO_HASH)
    assert again.id == "gw-1/7" and again.leaves == batch.leaves and again.header["prev"] == ZERO_HASH
    with pytest.raises(BatchRejected):
        verify_batch(again.encode(), public_key_of(gw_key + 1), keys.get, lambda i: factor, lambda d: None)


def test_next_baselines_only_moves_forward() -> None:
    readings = [A.reading(3), A.reading(2), B.reading(1)]
    readings[2].energy_wh = None
    moved = next_baselines(readings, {"dev-a": (1, 900, None)})
    assert moved == {"dev-a": (3, 1015, readings[0].timestamp)}  # with the measurement time of seq 3
    assert next_baselines(readings, {"dev-a": (9, 900, None)}) == {}


def test_random_device_ids_do_not_grow_labels() -> None:
    label = classify(topic("zz" + os.urandom(4).hex()), GOOD)
    assert isinstance(label, Rejected) and label.device_label == UNREGISTERED
