"""The SQLite spool: durable ingest decisions, atomic window sealing, receipts, limits and a full disk."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gw_helpers import SITE, Device, topic

from carbontrace_protocol.batch import ZERO_HASH
from carbontrace_protocol.emission_factors import get_factor
from edge_gateway.batcher import make_batch
from edge_gateway.classify import DeviceEntry, Rejected, Verified, classify_message
from edge_gateway.spool import OpenReading, Spool, SpoolFull, SpoolOverLimit

A = Device("dev-a", seed=b"a" * 32)
GW_KEY = 0xC0FFEE << 64
REGISTRY = {"dev-a": DeviceEntry("dev-a", A.public, "active")}


_TEST_START = [0]


@pytest.fixture(autouse=True)
def _one_time_per_test() -> None:
    # Every reading of a test is stamped from one instant, so signing "the same reading" twice gives the same
    # bytes (a redelivery) even when a second ticks over between the two signings.
    _TEST_START[0] = int(time.time())


def verified(seq: int, **kwargs: int) -> Verified:
    kwargs.setdefault("timestamp", _TEST_START[0] + seq)
    outcome = classify_message(topic("dev-a"), A.signed(seq, **kwargs), SITE, REGISTRY.get, int(time.time()), 300)
    assert isinstance(outcome, Verified)
    return outcome


def builder(window_s: int):  # type: ignore[no-untyped-def]
    def build(start: int, readings: list[OpenReading], baselines: dict[str, tuple[int, int]], seq: int,
              prev: bytes, fluxes: list[bytes]):  # type: ignore[no-untyped-def]
        return make_batch(GW_KEY, "gw-1", SITE, (start, start + window_s), 1, get_factor(), readings, baselines,
                          seq, prev, start + window_s, fluxes)

    return build


def test_ingest_decides_duplicates_conflicts_replays_and_gaps(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    result = spool.ingest([verified(s) for s in (5, 6, 9)], [], 60)
    assert result.accepted == [("dev-a", 5), ("dev-a", 6), ("dev-a", 9)]
    assert result.new_gaps == [("dev-a", 7, 8)]
    for start in spool.open_windows():  # sealed: below the first accepted number is now a replay
        spool.close_window(start, 60, builder(60))
    again = spool.ingest([verified(6), verified(6, co2_ppm=1), verified(2), verified(8)],
                         [Rejected("bad_signature", "dev-a", "x")], 60)
    assert again.duplicates == [("dev-a", 6)]
    assert [r.reason for r in again.rejected] == ["seq_conflict", "replay"]
    assert again.filled == [("dev-a", 8)]
    assert spool.gaps("dev-a") == [(7, 7)]
    assert spool.rejection_counts() == {("dev-a", "seq_conflict"): 1, ("dev-a", "replay"): 1,
                                        ("dev-a", "bad_signature"): 1}
    assert spool.device_counts() == {"dev-a": (4, 1)}
    spool.close()
    reopened = Spool(tmp_path / "s.db")  # everything above was committed
    assert reopened.gaps("dev-a") == [(7, 7)] and reopened.stats()["open_readings"] == 1


def test_a_lower_number_committed_after_the_first_is_no_replay_until_the_first_is_sealed(tmp_path: Path) -> None:
    """Ingest workers on a shared subscription commit in any order: a device's seq 7 may be stored before its
    seq 5. Until seq 7 is in a sealed batch nothing of the device left the spool, so 5 (and then 6) extend
    its range; once sealed, a lower number is a replay again."""
    spool = Spool(tmp_path / "s.db")
    spool.ingest([verified(7)], [], 60, parallel_workers=True)
    # one ingest process commits in arrival order: a lower number is a replay whatever is sealed
    assert [r.reason for r in spool.ingest([verified(3)], [], 60).rejected] == ["replay"]
    below = spool.ingest([verified(5)], [], 60, parallel_workers=True)
    assert below.accepted == [("dev-a", 5)] and below.rejected == [] and below.new_gaps == [("dev-a", 6, 6)]
    assert spool.ingest([verified(6)], [], 60, parallel_workers=True).filled == [("dev-a", 6)]
    assert spool.gaps("dev-a") == []
    for start in spool.open_windows():
        spool.close_window(start, 60, builder(60))
    late = spool.ingest([verified(4)], [], 60, parallel_workers=True)
    assert late.accepted == [] and [r.reason for r in late.rejected] == ["replay"]


def test_sealing_a_window_is_atomic_and_chains_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", clock=lambda: 1_000_010.0)
    spool.ingest([verified(s) for s in range(3)], [], 60)
    (start,) = spool.open_windows()
    assert start == 1_000_010 - 1_000_010 % 60

    def failing(*args: object) -> object:
        raise RuntimeError("power cut in the middle of sealing")

    with pytest.raises(RuntimeError):
        spool.close_window(start, 60, failing)  # type: ignore[arg-type]
    assert spool.stats()["open_readings"] == 3 and spool.chain_is_empty()  # rolled back: nothing half-done

    first = spool.close_window(start, 60, builder(60))
    assert first is not None and first.header["batch_seq"] == 0 and first.header["prev"] == ZERO_HASH
    assert spool.close_window(start, 60, builder(60)) is None  # idempotent: nothing left to seal
    spool.clock = lambda: 1_000_100.0
    spool.ingest([verified(3)], [], 60)
    (later,) = spool.open_windows()
    second = spool.close_window(later, 60, builder(60))
    assert second is not None and second.header["prev"] == first.hash and second.header["batch_seq"] == 1
    _, agg = second.aggregates()[-1]
    assert agg["energy"]["baseline"] is not None  # the energy baseline moved with the first batch
    pending = spool.next_unacked()
    assert pending is not None and pending.batch_id == "gw-1/0"
    held = spool.held_bytes()
    spool.mark_acked(0, {"batch_id": "gw-1/0"}, prune=True)
    assert spool.held_bytes() < held
    pending = spool.next_unacked()
    assert pending is not None and pending.batch_id == "gw-1/1"
    # a pruned reading's digest still recognises its redelivery
    assert spool.ingest([verified(0)], [], 60).duplicates == [("dev-a", 0)]


def test_byte_limit_refuses_new_readings_without_touching_old_ones(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=2000)
    accepted = 0
    with pytest.raises(SpoolOverLimit, match="over the limit"):
        for seq in range(100):
            accepted += len(spool.ingest([verified(seq)], [], 60).accepted)
    assert 0 < accepted < 100
    assert spool.stats()["open_readings"] == accepted


def test_a_full_disk_is_a_clear_error_and_loses_no_accepted_reading(tmp_path: Path) -> None:
    """Simulated with SQLite's PRAGMA max_page_count (SQLITE_FULL, the same error as a full disk)."""
    probe = Spool(tmp_path / "s.db")
    pages = probe.file_bytes() // 4096
    probe.close()
    spool = Spool(tmp_path / "s.db", max_page_count=pages + 6)
    committed = 0
    with pytest.raises(SpoolFull, match="database or disk is full") as caught:
        for start in range(0, 10_000, 10):
            committed += len(spool.ingest([verified(s) for s in range(start, start + 10)], [], 60).accepted)
    assert "not acked" in str(caught.value)
    assert committed > 0
    assert spool.stats()["open_readings"] == committed  # the failed group rolled back, the rest is intact
    spool.close()
    again = Spool(tmp_path / "s.db")  # without the ceiling (space freed), the same readings are there
    assert again.stats()["open_readings"] == committed
    assert again.ingest([verified(committed)], [], 60).accepted == [("dev-a", committed)]
