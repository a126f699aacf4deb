"""End to end against a real Mosquitto and a real HTTP cloud stub: readings in, verified batches out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gw_helpers import (
    Device,
    InProcessGateway,
    make_gateway_key,
    make_stub,
    publish_all,
    start_persistent_broker,
    topic,
    write_config,
)

from carbontrace.servers import wait_until
from carbontrace_protocol import cbor
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED
from tests.conftest import MosquittoBroker

pytestmark = pytest.mark.timeout(60)


def test_valid_readings_arrive_and_every_bad_input_is_rejected_with_its_reason(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    a, b, stranger, impostor, revoked = (Device(n) for n in ("dev-a", "dev-b", "dev-x", "dev-a", "dev-r"))
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a, b], revoked=[revoked])
    config = write_config(tmp_path, key_file, stub.url, mosquitto)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            first = [(topic("dev-a"), a.signed(s)) for s in range(5, 15)]
            first += [(topic("dev-b"), b.signed(s)) for s in range(0, 10)]
            publish_all(mosquitto, first)
            wait_until(lambda: len(gw.spool().device_counts()) == 2
                       and sum(n for n, _ in gw.spool().device_counts().values()) == 20, 10, "first readings")

            good_a15 = a.signed(15)
            bad = [
                (topic("dev-a"), os.urandom(40)),  # random bytes
                (topic("dev-a"), good_a15[: len(good_a15) // 2]),  # truncated CBOR
                (topic("dev-a"), cbor.encode([1, 2, 3])),  # valid CBOR, wrong structure
                (topic("dev-x"), stranger.signed(0)),  # valid signature, unknown key/device
                (topic("dev-a"), impostor.signed(40)),  # registered id, signed by another key
                (topic("dev-b"), a.signed(41)),  # a's reading on b's topic
                (topic("dev-r"), revoked.signed(0)),  # revoked device
                (topic("dev-a"), a.signed(2)),  # replay: older than anything seen, not a known gap
                (topic("dev-a"), a.signed(7, co2_ppm=999)),  # seq 7 again, other bytes
                (topic("dev-a"), a.signed(42, timestamp=int(time.time()) - 100_000)),  # clock skew
                (topic("dev-a"), first[0][1]),  # exact redelivery of seq 5: a duplicate, not an error
                (topic("dev-x", site="site-b"), stranger.signed(1)),  # another site's topic: never ours
            ]
            publish_all(mosquitto, bad)
            # Gaps: a jumps 14 -> 20 (15..19 missing), then 17 arrives late; a format-1 unsynced reading (seconds
            # since boot in its time field) is refused rather than stored at 1970.
            late = [(topic("dev-a"), a.signed(20)), (topic("dev-a"), a.signed(17)),
                    (topic("dev-a"), a.signed(21, timestamp=5, flags=FLAG_TIME_NOT_SYNCED))]
            publish_all(mosquitto, late)

            expected_reasons = {
                ("dev-a", "malformed_cbor"): 2,
                ("dev-a", "malformed_cose"): 1,
                ("_unregistered", "unknown_device"): 1,
                ("dev-a", "bad_signature"): 1,
                ("dev-b", "topic_mismatch"): 1,
                ("dev-r", "revoked_device"): 1,
                ("dev-a", "replay"): 1,
                ("dev-a", "seq_conflict"): 1,
                ("dev-a", "clock_skew"): 1,
                ("dev-a", "unsynced_without_boot"): 1,
            }
            wait_until(lambda: gw.spool().rejection_counts() == expected_reasons, 10, "rejections")
            wait_until(lambda: gw.spool().device_counts()["dev-a"] == (12, 1), 10, "late dev-a readings")
            assert gw.spool().gaps("dev-a") == [(15, 16), (18, 19)]

            sent = {("dev-a", s) for s in [*range(5, 15), 17, 20]} | {("dev-b", s) for s in range(10)}
            wait_until(lambda: stub.reading_keys() == sent, 15, "every valid reading in an accepted batch")
            wait_until(lambda: gw.spool().stats()["unacked_batches"] == 0, 10, "receipts stored")
            metrics = gw.gateway.metrics.registry
            assert metrics.get_sample_value("ct_gateway_readings_rejected_total",
                                            {"reason": "replay", "device": "dev-a"}) == 1
            assert metrics.get_sample_value("ct_gateway_readings_duplicate_total", {"device": "dev-a"}) == 1
            assert metrics.get_sample_value("ct_gateway_missing_detected_total", {"device": "dev-a"}) == 5
        assert gw.exit_code == 0
        assert stub.state.rejected == [] and stub.state.duplicate_readings == 0
        # the aggregates the stub re-derived carry the energy across batches exactly once
        deltas = sum(agg["energy"]["delta_wh"] for agg in stub.state.aggregates if agg["device"] == "dev-b")
        assert deltas == 5 * 9
    finally:
        stub.stop()


def test_cloud_outage_backlog_drains_in_order(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    sent: set[tuple[str, int]] = set()
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            stub.stop()  # the cloud goes away
            for round_ in range(4):
                seqs = range(round_ * 10, round_ * 10 + 10)
                publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in seqs])
                sent |= {("dev-a", s) for s in seqs}
                time.sleep(1.1)
            wait_until(lambda: gw.spool().stats()["unacked_batches"] >= 3, 10, "a backlog of batches")
            backlog = gw.spool().stats()["unacked_batches"]
            assert stub.state.upload_requests == 0
            stub.start()  # back on the same port
            wait_until(lambda: gw.spool().stats()["unacked_batches"] == 0
                       and gw.spool().stats()["open_readings"] == 0, 20, "backlog drained")
        order = stub.state.accepted_order
        assert order == list(range(len(order))) and len(order) >= backlog
        assert stub.reading_keys() == sent
        assert stub.state.duplicate_readings == 0 and stub.state.rejected == []
    finally:
        stub.stop()


def test_broker_restart_loses_nothing(tmp_path: Path) -> None:
    mosquitto = start_persistent_broker(tmp_path / "broker")
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    config = write_config(tmp_path, key_file, stub.url, mosquitto)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(0, 30)])
            mosquitto.restart()
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(30, 60)], client_id="pub2")
            wait_until(lambda: stub.reading_keys() == {("dev-a", s) for s in range(60)}, 30, "all readings")
            assert gw.spool().gaps("dev-a") == []
    finally:
        stub.stop()
        mosquitto.stop()


def test_out_of_order_409_resyncs_by_renumbering(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    stub.state.first_batch_seq = 1  # this cloud numbers a gateway's batches from 1
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(10)])
            time.sleep(1.1)
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(10, 20)])
            wait_until(lambda: stub.reading_keys() == {("dev-a", s) for s in range(20)}, 15, "all readings")
            assert stub.state.conflicts >= 1
            assert stub.state.accepted_order[0] == 1
            assert stub.state.accepted_order == list(range(1, 1 + len(stub.state.accepted_order)))
    finally:
        stub.stop()


def test_rejected_batch_halts_uploads_and_keeps_everything(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a = Device("dev-a")
    key_file, _ = make_gateway_key(tmp_path)
    _, other_public = make_gateway_key(tmp_path / "other") if (tmp_path / "other").mkdir() is None else (None, b"")
    stub = make_stub(other_public, [a])  # the cloud knows another key for this gateway: every batch is a 422
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(5)])
            wait_until(lambda: gw.spool().stats()["upload_halted"] is not None, 10, "upload halt")
            time.sleep(1.5)
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(5, 10)])
            wait_until(lambda: gw.spool().stats()["unacked_batches"] >= 2, 10, "a second batch")
            assert stub.state.upload_requests == 1  # stopped after the 422, no retry storm
            assert "bad_gateway_signature" in (gw.spool().stats()["upload_halted"] or "")
            assert gw.gateway.metrics.registry.get_sample_value("ct_gateway_upload_halted") == 1
    finally:
        stub.stop()
    assert [e["error"] for e in stub.state.rejected] == ["bad_gateway_signature"]


def test_spool_byte_limit_pauses_ingest_then_resumes_without_loss(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    limit = 16 * 1024  # room for a few dozen readings (a reading is ~230 bytes, held twice once batched)
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1, spool_max_bytes=limit)
    sent = {("dev-a", s) for s in range(300)}
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            stub.stop()  # nothing can be uploaded, so the spool fills up
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(300)])
            wait_until(lambda: gw.gateway.ingest.paused == "spool_over_limit", 45, "ingest pause")
            held = sum(n for n, _ in gw.spool().device_counts().values())
            assert 0 < held < 300
            assert gw.gateway.metrics.registry.get_sample_value(
                "ct_gateway_ingest_paused", {"reason": "spool_over_limit"}) == 1
            stub.start()  # uploads free space (acked batches are pruned), ingest resumes, broker redelivers
            wait_until(lambda: stub.reading_keys() == sent, 30, "every reading after the pause")
        assert stub.state.duplicate_readings == 0
    finally:
        stub.stop()


def test_registry_follows_the_cloud_and_metrics_are_served(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    import httpx

    from tests.conftest import free_port

    a, newcomer = Device("dev-a"), Device("dev-n")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    port = free_port()
    config = write_config(tmp_path, key_file, stub.url, mosquitto, metrics_port=port,
                          registry_refresh_on_unknown_s=0.3, registry_refresh_s=1.0)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            publish_all(mosquitto, [(topic("dev-n"), newcomer.signed(0))])
            wait_until(lambda: gw.spool().rejection_counts() == {("_unregistered", "unknown_device"): 1}, 10,
                       "unknown device rejected")
            with stub.lock:  # the device is registered in the cloud now; the gateway picks it up
                stub.state.devices["dev-n"] = (newcomer.public, "active")
            wait_until(lambda: "dev-n" in gw.spool().registry(), 10, "registry refresh")
            publish_all(mosquitto, [(topic("dev-n"), newcomer.signed(1)), (topic("dev-a"), a.signed(0))])
            wait_until(lambda: stub.reading_keys() == {("dev-n", 1), ("dev-a", 0)}, 10, "newcomer's reading")
            with stub.lock:  # revoked in the cloud: the next reading is refused
                stub.state.devices["dev-a"] = (a.public, "revoked")
            wait_until(lambda: gw.spool().registry()["dev-a"].status == "revoked", 10, "revocation")
            publish_all(mosquitto, [(topic("dev-a"), a.signed(1))])
            wait_until(lambda: ("dev-a", "revoked_device") in gw.spool().rejection_counts(), 10, "revoked reject")
            stub.stop()  # the cloud goes away: the cached registry keeps the gateway working
            publish_all(mosquitto, [(topic("dev-n"), newcomer.signed(2))])
            wait_until(lambda: gw.spool().device_counts()["dev-n"][0] == 2, 10, "reading with the cached registry")
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert 'ct_gateway_readings_accepted_total{device="dev-n"} 2.0' in text
            assert 'ct_gateway_readings_rejected_total{device="_unregistered",reason="unknown_device"} 1.0' in text
            assert "ct_gateway_unacked_batches" in text and "ct_gateway_upload_lag_seconds" in text
    finally:
        stub.stop()
