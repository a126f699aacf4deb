"""Readings taken before the device's first time sync: held in the spool, re-timed from the boot's first synced
reading into the window of their re-timed time, carried to the cloud with the signed reference, and rejected
with a counted reason (never stored at 1970) when no reference comes in time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gw_helpers import SITE, Device, InProcessGateway, make_gateway_key, make_stub, publish_all, topic, write_config

from carbontrace.servers import wait_until
from carbontrace_protocol.batch import decode_batch
from carbontrace_protocol.batch_verify import verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading
from edge_gateway.batcher import make_batch
from edge_gateway.classify import DeviceEntry, Verified, classify_message
from edge_gateway.spool import OpenReading, Spool
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(90)

A = Device("dev-a", seed=b"r" * 32)
GW_KEY = 0xBEEF << 64
REGISTRY = {"dev-a": DeviceEntry("dev-a", A.public, "active")}
WINDOW_S = 60


def signed(device: Device, seq: int, boot: int, up: int, timestamp: int | None = None) -> bytes:
    flags = FLAG_TIME_NOT_SYNCED if timestamp is None else 0
    reading = Reading(device.device_id, seq, timestamp, "0.4.0", flags=flags, co2_ppm=600 + seq,
                      energy_wh=1000 + seq, boot=boot, up=up)
    return bytes(sign_reading(reading, device.key))


def verified(payload: bytes, now: int) -> Verified:
    outcome = classify_message(topic("dev-a"), payload, SITE, REGISTRY.get, now, 300)
    assert isinstance(outcome, Verified), outcome
    return outcome


def build(start: int, readings: list[OpenReading], baselines: dict[str, tuple[int, int]], seq: int,
          prev: bytes, fluxes: list[bytes]):  # type: ignore[no-untyped-def]
    return make_batch(GW_KEY, "gw-1", SITE, (start, start + WINDOW_S), 1, get_factor(), readings, baselines,
                      seq, prev, start + WINDOW_S, fluxes)


def test_unsynced_reading_is_held_across_a_restart_then_retimed_into_its_window(tmp_path: Path) -> None:
    now = [1_764_126_000.0]
    spool = Spool(tmp_path / "s.db", clock=lambda: now[0])
    result = spool.ingest([verified(signed(A, 0, boot=4, up=5), int(now[0]))], [], WINDOW_S)
    assert result.accepted == [("dev-a", 0)] and result.retimed == []
    assert spool.open_windows() == [] and spool.held_readings() == [("dev-a", 0, None)]  # not in any window
    spool.close()
    now[0] += 200
    spool = Spool(tmp_path / "s.db", clock=lambda: now[0])  # a gateway restart: still held
    assert spool.held_readings() == [("dev-a", 0, None)] and spool.stats()["held_unsynced"] == 1
    # the redelivered copy is a duplicate, not a second reading
    assert spool.ingest([verified(signed(A, 0, boot=4, up=5), int(now[0]))], [], WINDOW_S).duplicates == [("dev-a", 0)]
    synced_at = int(now[0])
    reference = signed(A, 1, boot=4, up=130, timestamp=synced_at)
    result = spool.ingest([verified(reference, synced_at)], [], WINDOW_S)
    assert result.retimed == [("dev-a", 0)] and spool.held_readings() == []
    retimed_at = synced_at - 125
    # the re-timed reading lies in the window of its measurement time, the reference in the current one
    assert spool.open_windows() == [retimed_at - retimed_at % WINDOW_S, synced_at - synced_at % WINDOW_S]
    first = spool.close_window(spool.open_windows()[0], WINDOW_S, build)
    assert first is not None and first.retimed == {0: (retimed_at, reference)}
    # the evidence travels in the blob, and a cloud re-derives the time from it without trusting the gateway
    parsed = decode_batch(first.encode())
    checked = verify_batch(parsed, public_gateway_key(), lambda d: A.public, lambda f: get_factor(f), lambda d: None)
    assert [(r.reading.seq, r.timestamp, r.reading.timestamp) for r in checked.readings] == [(0, retimed_at, None)]


def public_gateway_key() -> bytes:
    from carbontrace_protocol import p256

    return bytes(p256.public_key(GW_KEY))


def test_a_reading_of_another_boot_waits_and_then_times_out_counted(tmp_path: Path) -> None:
    now = [1_764_126_000.0]
    spool = Spool(tmp_path / "s.db", clock=lambda: now[0])
    spool.ingest([verified(signed(A, 0, boot=4, up=5), int(now[0]))], [], WINDOW_S)
    # the device rebooted before it synced: boot 5's reference says nothing about boot 4
    result = spool.ingest([verified(signed(A, 1, boot=5, up=30, timestamp=int(now[0])), int(now[0]))], [], WINDOW_S)
    assert result.retimed == [] and spool.held_readings() == [("dev-a", 0, None)]
    assert spool.expire_held(timeout_s=600) == []  # not yet
    now[0] += 601
    expired = spool.expire_held(timeout_s=600)
    assert [(r.reason, r.device_label) for r in expired] == [("retime_timeout", "dev-a")]
    assert spool.held_readings() == [("dev-a", 0, "retime_timeout")]  # kept, with its reason, never uploaded
    assert spool.rejection_counts() == {("dev-a", "retime_timeout"): 1}
    (window,) = spool.open_windows()
    batch = spool.close_window(window, WINDOW_S, build)
    assert batch is not None and batch.header["readings"] == 1 and batch.retimed == {}
    # and a late reference of boot 4 no longer brings it back
    late = spool.ingest([verified(signed(A, 2, boot=4, up=900, timestamp=int(now[0])), int(now[0]))], [], WINDOW_S)
    assert late.retimed == [] and spool.stats()["held_unsynced"] == 0


def test_an_inconsistent_uptime_is_rejected_with_its_reason(tmp_path: Path) -> None:
    now = 1_764_126_000
    spool = Spool(tmp_path / "s.db", clock=lambda: float(now))
    spool.ingest([verified(signed(A, 0, boot=4, up=500), now)], [], WINDOW_S)
    # seq 0 of the same boot claimed more uptime than seq 1: the device's clock cannot place it
    result = spool.ingest([verified(signed(A, 1, boot=4, up=100, timestamp=now), now)], [], WINDOW_S)
    assert [r.reason for r in result.rejected] == ["retime_inconsistent_up"]
    assert spool.held_readings() == [("dev-a", 0, "retime_inconsistent_up")]
    assert spool.rejection_counts() == {("dev-a", "retime_inconsistent_up"): 1}


def test_end_to_end_over_mosquitto_held_through_a_gateway_restart(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [A])
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1, retime_timeout_s=2)
    try:
        boot7 = [(topic("dev-a"), signed(A, s, boot=7, up=10 + s)) for s in range(3)]
        orphan = [(topic("dev-a"), signed(A, 0 + 10, boot=6, up=4))]  # a boot that never synced
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            publish_all(mosquitto, boot7)
            wait_until(lambda: len(gw.spool().held_readings()) == 3, 10, "unsynced readings held")
        assert stub.reading_keys() == set()  # nothing uploaded with a made-up time
        with InProcessGateway(config) as gw:  # restarted: the spool still holds them
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            synced_at = int(time.time())
            publish_all(mosquitto, [(topic("dev-a"), signed(A, 3, boot=7, up=40, timestamp=synced_at)), *orphan])
            wanted = {("dev-a", s) for s in range(4)}
            wait_until(lambda: stub.reading_keys() == wanted, 20, "re-timed readings in accepted batches")
            wait_until(lambda: gw.spool().rejection_counts().get(("dev-a", "retime_timeout")) == 1, 15,
                       "the orphan timed out")
            metrics = gw.gateway.metrics.registry
            assert metrics.get_sample_value("ct_gateway_readings_rejected_total",
                                            {"reason": "retime_timeout", "device": "dev-a"}) == 1
        assert stub.state.rejected == []
        # the stub re-derived each time from the signed reference (verify_batch): 40 - (10 + s) s before the sync
        assert {s: stub.state.timestamps[("dev-a", s)] for s in range(4)} == {
            0: synced_at - 30, 1: synced_at - 29, 2: synced_at - 28, 3: synced_at}
        assert ("dev-a", 10) not in stub.reading_keys()
    finally:
        stub.stop()
