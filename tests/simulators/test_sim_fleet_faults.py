"""The fleet's fault plan (pure): decisions fixed by the seed, and each tamper mode classified by the real
gateway classifier as the plan predicts."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest

from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading
from edge_gateway.classify import ACTIVE, DeviceEntry, Rejected, Verified, classify_message
from edge_gateway.metrics import GatewayMetrics
from simulators.fleet_faults import (
    TAMPER_MODES,
    FaultPlan,
    TimedFault,
    draw,
    expected_tamper_reason,
    flip_byte,
    parse_timed,
)
from simulators.fleet_view import parse_rejections

SITE = "site-x"
DEVICE = "sim-000"


def signed(seq: int, key: int) -> bytes:
    reading = Reading(DEVICE, seq, int(time.time()), "0.1.0", co2_ppm=612, temperature_centi_c=2150,
                      humidity_centi_pct=4410, energy_wh=1234, power_deci_w=9870)
    return bytes(sign_reading(reading, key))


@pytest.mark.parametrize("mode", TAMPER_MODES)
def test_each_tamper_mode_gets_the_predicted_gateway_reason(mode: str) -> None:
    key = p256.private_key_from_bytes(bytes(range(40)))
    entry = DeviceEntry(DEVICE, bytes(p256.public_key(key)), ACTIVE)
    topic = f"carbontrace/v1/{SITE}/{DEVICE}/reading"
    for seq in range(20):
        message = signed(seq, key)
        assert isinstance(classify_message(topic, message, SITE, {DEVICE: entry}.get, int(time.time()), 300), Verified)
        tampered = flip_byte(message, mode, 1, DEVICE, seq)
        assert len(tampered) == len(message)
        assert sum(a != b for a, b in zip(message, tampered, strict=True)) == 1
        outcome = classify_message(topic, tampered, SITE, {DEVICE: entry}.get, int(time.time()), 300)
        assert isinstance(outcome, Rejected)
        assert outcome.reason.startswith(expected_tamper_reason(mode))


def test_decisions_depend_only_on_seed_device_and_seq() -> None:
    plan = FaultPlan(seed=5, tamper_rate=0.25, replay_rate=0.1)
    again = FaultPlan(seed=5, tamper_rate=0.25, replay_rate=0.1)
    other = FaultPlan(seed=6, tamper_rate=0.25, replay_rate=0.1)
    picks = [plan.tamper_mode(DEVICE, s) for s in range(4000)]
    assert picks == [again.tamper_mode(DEVICE, s) for s in range(4000)]
    assert picks != [other.tamper_mode(DEVICE, s) for s in range(4000)]
    assert abs(sum(p is not None for p in picks) / 4000 - 0.25) < 0.03
    assert {p for p in picks if p} == set(TAMPER_MODES)
    replays = [plan.replay_after(DEVICE, s) for s in range(4000)]
    chosen = [r for r in replays if r is not None]
    assert abs(len(chosen) / 4000 - 0.1) < 0.02
    assert {back for back, _ in chosen} == {1, 2, 3}
    assert {conflict for _, conflict in chosen} == {True, False}
    assert FaultPlan(seed=5).tamper_mode(DEVICE, 1) is None and FaultPlan(seed=5).replay_after(DEVICE, 1) is None
    assert 0.0 <= draw(1, "x", DEVICE, 2) < 1.0


def test_clock_jump_device_is_fixed_by_the_seed() -> None:
    jump = TimedFault(3600, 0)
    chosen = {FaultPlan(seed=s, clock_jump=jump).clock_jump_device(5) for s in range(40)}
    assert chosen == {0, 1, 2, 3, 4}
    assert FaultPlan(seed=3, clock_jump=jump).clock_jump_device(5) == FaultPlan(seed=3, clock_jump=jump).clock_jump_device(5)
    assert FaultPlan(seed=3).clock_jump_device(5) is None


def test_timed_faults_parse_and_span() -> None:
    outage = parse_timed("2.5@10")
    assert outage == TimedFault(2.5, 10.0)
    assert not outage.active(9.99) and outage.active(10.0) and outage.active(12.4) and not outage.active(12.5)
    assert parse_timed("-3600") == TimedFault(-3600.0, 0.0)
    for bad in ("x@1", "1@y", "1@-2", ""):
        with pytest.raises(ValueError):
            parse_timed(bad)
    with pytest.raises(ValueError):
        FaultPlan(tamper_rate=1.5)


def test_rejections_are_read_from_the_gateway_metrics_text() -> None:
    metrics = GatewayMetrics()
    metrics.rejected.labels("bad_signature", "sim-000").inc(3)
    metrics.rejected.labels("bad_signature", "sim-001").inc(2)
    metrics.rejected.labels("unknown_device", "_unregistered").inc(4)
    metrics.duplicates.labels("sim-000").inc(1)
    metrics.accepted.labels("sim-000").inc(50)
    text = generate_latest(metrics.registry).decode()
    assert parse_rejections(text) == {"bad_signature": 5, "unknown_device": 4, "duplicate": 1}


def test_live_summary_renders_as_a_line_and_as_a_progress_bar() -> None:
    import io

    from rich.console import Console

    from simulators.fleet import FleetSnapshot
    from simulators.fleet_view import LineView, ProgressView

    snap = FleetSnapshot(elapsed_s=2.0, devices=3, made=30, sent=31, acked=29, outbox=1, dropped=0, reboots=0,
                         tampered=2, replayed=0, forged_sent=0, skewed=0, expected={"bad_signature": 2}, expected_gaps=1,
                         rejected={"bad_signature": 2}, errors={}, finished=0)
    lines = io.StringIO()
    LineView(lines).update(snap)
    assert "made 30 sent 31 acked 29 outbox 1 dropped 0" in lines.getvalue()
    assert "injected tampered 2" in lines.getvalue() and "gateway rejected bad_signature=2" in lines.getvalue()
    screen = io.StringIO()
    with ProgressView(60, by_count=True, console=Console(file=screen, force_terminal=True, width=200)) as view:
        view.update(snap)
    assert "50%" in screen.getvalue() and "acked 29" in screen.getvalue()
