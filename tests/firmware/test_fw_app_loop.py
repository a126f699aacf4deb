"""The device application on the host port, with the real SCD4x/PZEM drivers over the bus emulators and a
real Mosquitto: readings arrive in order and verify, survive broker restarts, and overflow drops the oldest."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from carbontrace_device import config
from carbontrace_device.app import DeviceApp

from carbontrace.servers import wait_until
from carbontrace_protocol.reading import (
    FLAG_CO2_SENSOR_FAULT,
    FLAG_METER_FAULT,
    FLAG_METER_RESET,
    FLAG_TIME_NOT_SYNCED,
    Reading,
)
from carbontrace_protocol.retime import retimed_timestamp
from carbontrace_protocol.verify import verify_reading
from simulators.device_host import build_emulated_sensors
from simulators.host_port import HostPort
from tests.conftest import MosquittoBroker
from tests.firmware.fw_mqtt_helpers import Subscriber, device_settings

SITE = "site-t"


def run_until(app: DeviceApp, cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"app did not get there within {timeout:.1f} s")
        app.run_once()
        time.sleep(0.005)


def make_app(tmp_path: Path, broker: MosquittoBroker | int, device: str, **overrides: Any) -> tuple[DeviceApp, Any, Any]:
    port = HostPort(str(tmp_path / "flash"))
    settings = config.load(
        port.flash,
        dict(
            {
                **device_settings(broker, tmp_path / "flash", SITE, device),
                "site_id": SITE,
                "device_id": device,
                "measure_interval_ms": 60,
                "status_interval_ms": 60000,
                "keepalive_s": 5,
                "reconnect_max_ms": 300,
            },
            **overrides,
        ),
    )
    co2, meter, scd, pzem = build_emulated_sensors(time_scale=100.0)
    return DeviceApp(port, settings, co2_sensor=co2, meter=meter), scd, pzem


@pytest.fixture
def writable_broker(mosquitto: MosquittoBroker) -> Iterator[MosquittoBroker]:
    # Mosquitto started as root drops to the "mosquitto" user, which cannot write its 0700 temp dir; let it
    # save its database so sessions survive the restarts below.
    os.chmod(mosquitto.workdir, 0o777)
    yield mosquitto


def decode_all(payloads: list[bytes], public_key: bytes) -> list[Reading]:
    return [verify_reading(p, public_key) for p in payloads]


def test_readings_arrive_in_order_verified_by_paho_and_mosquitto_sub(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    app, scd, _pzem = make_app(tmp_path, mosquitto, "dev-order")
    topic = f"carbontrace/v1/{SITE}/dev-order/reading"
    assert app.reading_topic == topic
    msub, paho_access = mosquitto.add_gateway(SITE, "msub-order"), mosquitto.add_gateway(SITE, "paho-order")
    sub = Subscriber(paho_access, f"carbontrace/v1/{SITE}/dev-order/#")
    # mosquitto_sub on a persistent session: -E subscribes and exits, the second run collects what queued
    base = ["mosquitto_sub", "-h", msub.host, "-p", str(msub.port), "--cafile", str(msub.ca_file), "-u", msub.username,
            "-P", msub.credentials.password, "-c", "-i", msub.username, "-q", "1", "-t", topic]
    subprocess.run([*base, "-E"], check=True, timeout=10)
    app.measure_limit = 12
    run_until(app, lambda: app.readings_made == 12 and app.outbox.depth() == 0)
    wait_until(lambda: len(sub.payloads("/reading")) >= 12)
    payloads = sub.payloads("/reading")
    readings = decode_all(payloads, app.key.public_key)
    assert [r.seq for r in readings] == list(range(len(readings)))  # in order, none missing
    now = time.time()
    for r in readings:
        assert r.device_id == "dev-order" and r.flags == 0 and abs(r.timestamp - now) < 30
        assert r.co2_ppm is not None and 300 <= r.co2_ppm <= 5000
        assert r.temperature_centi_c is not None and r.humidity_centi_pct is not None
        assert r.energy_wh is not None and r.power_deci_w == 1000  # the emulator's default 100.0 W load
    assert scd.last_read is not None and readings[-1].co2_ppm == scd.last_read.co2_ppm
    out = subprocess.run([*base, "-C", "12", "-F", "%x", "-W", "10"], capture_output=True, timeout=15, check=True)
    assert [bytes.fromhex(line) for line in out.stdout.decode().split()] == payloads[:12]
    status = json.loads(sub.payloads("/status")[-1])
    assert status["state"] == "online" and status["fw"] == app.firmware and status["dropped"] == 0
    assert set(status) >= {"heap", "outbox", "seq"}
    app.shutdown()
    wait_until(lambda: json.loads(sub.payloads("/status")[-1])["state"] == "offline")
    sub.close()


def test_sensor_faults_meter_reset_and_unsynced_time_set_flags(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    app, scd, pzem = make_app(tmp_path, mosquitto, "dev-faults", co2_ready_timeout_ms=100)
    sub = Subscriber(mosquitto.add_gateway(SITE, "paho-faults"), f"carbontrace/v1/{SITE}/dev-faults/reading")
    host = app.port
    assert isinstance(host, HostPort)
    host._synced = False  # a board before its first NTP answer
    host.ntp_available = False
    pzem.set_energy_wh(50_000)
    run_until(app, lambda: app.readings_made >= 1)
    scd.detach(scd.address)  # the CO2 sensor falls off the bus
    run_until(app, lambda: app.readings_made >= 2)
    pzem.faults.offline = True  # the meter stops answering
    run_until(app, lambda: app.readings_made >= 3)
    pzem.faults.offline = False
    pzem.set_energy_wh(0)  # the counter was reset
    run_until(app, lambda: app.readings_made >= 4)
    host.ntp_available = True
    app.clock.retry_interval_ms = 0
    app.measure_limit = 5
    run_until(app, lambda: app.readings_made == 5 and app.outbox.depth() == 0)
    wait_until(lambda: len(sub.payloads("/reading")) >= 5)
    r = decode_all(sub.payloads("/reading")[:5], app.key.public_key)
    assert r[0].flags == FLAG_TIME_NOT_SYNCED and r[0].co2_ppm is not None and r[0].energy_wh is not None
    # no wall time before the sync (not 1970, not seconds since boot in its place): boot + up instead
    assert r[0].timestamp is None and r[0].boot == app.boot and r[0].up is not None and r[0].up < 60
    assert r[1].flags == FLAG_TIME_NOT_SYNCED | FLAG_CO2_SENSOR_FAULT
    assert (r[1].co2_ppm, r[1].temperature_centi_c, r[1].humidity_centi_pct) == (None, None, None)
    assert r[1].energy_wh is not None and r[1].energy_wh >= 50_000
    assert r[2].flags == FLAG_TIME_NOT_SYNCED | FLAG_CO2_SENSOR_FAULT | FLAG_METER_FAULT
    assert (r[2].energy_wh, r[2].power_deci_w) == (None, None)
    assert r[3].flags == FLAG_TIME_NOT_SYNCED | FLAG_CO2_SENSOR_FAULT | FLAG_METER_RESET
    assert r[3].energy_wh is not None and r[3].energy_wh < 1000
    assert r[4].flags == FLAG_CO2_SENSOR_FAULT and r[4].timestamp > 1_700_000_000  # synced now
    # and the synced reading still carries boot + up: it is the reference the gateway re-times the others from
    assert r[4].boot == app.boot and r[4].up is not None and r[4].up >= r[3].up  # type: ignore[operator]
    for earlier in r[:4]:
        assert r[4].timestamp - 60 <= retimed_timestamp(earlier, r[4]) <= r[4].timestamp
    app.shutdown()
    sub.close()


def test_broker_restarts_lose_nothing_and_repeat_no_seq(tmp_path: Path, writable_broker: MosquittoBroker) -> None:
    broker = writable_broker
    app, _scd, _pzem = make_app(tmp_path, broker, "dev-restart")
    sub = Subscriber(broker.add_gateway(SITE, "paho-restart"), f"carbontrace/v1/{SITE}/dev-restart/reading")
    stored: list[int] = []
    app.on_reading = lambda seq, _rid: stored.append(seq)
    run_until(app, lambda: app.readings_acked >= 5)
    for kill in (False, True):
        # let the subscriber catch up with everything the broker acknowledged, then take the broker away
        acked = app.readings_acked
        wait_until(lambda acked=acked: len(sub.payloads("/reading")) >= acked)
        subscribed = sub.subscribed
        broker.stop(kill=kill)
        made = app.readings_made
        run_until(app, lambda made=made: app.readings_made >= made + 8)  # measuring goes on, into the outbox
        assert app.outbox.depth() >= 8
        broker.start()
        sub.wait_subscribed(subscribed + 1)
        app.measure_limit = made + 10
        run_until(app, lambda made=made: app.outbox.depth() == 0 and app.readings_made == made + 10, timeout=20)
        app.measure_limit = None
    wait_until(lambda: {r.seq for r in decode_all(sub.payloads("/reading"), app.key.public_key)} >= set(stored))
    readings = decode_all(sub.payloads("/reading"), app.key.public_key)
    by_seq: dict[int, set[bytes]] = {}
    for r, p in zip(readings, sub.payloads("/reading"), strict=True):
        by_seq.setdefault(r.seq, set()).add(p)
    assert set(by_seq) == set(stored) == set(range(len(stored)))  # nothing lost
    assert all(len(v) == 1 for v in by_seq.values())  # redeliveries carry the same bytes
    assert app.mqtt.connects >= 3
    app.shutdown()
    sub.close()


def test_outbox_overflow_drops_oldest_and_reports_the_count(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    mosquitto.stop()
    app, _scd, _pzem = make_app(tmp_path, mosquitto, "dev-full", outbox_budget_bytes=16 + 5 * 416)
    assert app.outbox.capacity() == 5
    app.measure_limit = 12
    run_until(app, lambda: app.readings_made == 12)
    assert app.outbox.depth() == 5 and app.outbox.dropped == 7
    mosquitto.start()
    sub = Subscriber(mosquitto.add_gateway(SITE, "paho-full"), f"carbontrace/v1/{SITE}/dev-full/#")
    run_until(app, lambda: app.outbox.depth() == 0)
    wait_until(lambda: len(sub.payloads("/reading")) >= 5)
    seqs = [r.seq for r in decode_all(sub.payloads("/reading"), app.key.public_key)]
    assert seqs == [7, 8, 9, 10, 11]  # the oldest seven were dropped
    birth = json.loads(sub.payloads("/status")[0])
    assert birth["state"] == "online" and birth["dropped"] == 7 and birth["outbox"] == 5
    app.shutdown()
    sub.close()


def test_each_start_of_the_app_is_a_new_boot(tmp_path: Path) -> None:
    first, _, _ = make_app(tmp_path, 1, "dev-boots")  # port 1: nothing listens, no reading is sent
    second, _, _ = make_app(tmp_path, 1, "dev-boots")  # the same flash: a reboot
    assert (first.boot, second.boot) == (0, 1)
    assert json.loads(second._status_json("online"))["boot"] == 1


def test_an_s0_total_survives_a_reboot_and_a_cold_start_is_flagged(tmp_path: Path) -> None:
    """The real app over the S0 counter with its flash store: no broker needed, the outbox holds the readings."""
    from carbontrace_device.s0_counter import S0Counter, S0TotalStore

    from simulators.s0_source import FakePin

    # The meter's own clock moves a minute per cycle: 250 pulses (250 Wh) within the real few milliseconds
    # between two fast cycles would be a power above the reading's range, and the reading a meter fault.
    meter_ms = [0]

    def boot() -> tuple[DeviceApp, FakePin]:
        port = HostPort(str(tmp_path / "flash"))
        settings = config.load(port.flash, {"device_id": "dev-s0", "co2_sensor": "none", "meter": "s0",
                                            "measure_interval_ms": 1})
        pin = FakePin(4)
        meter = S0Counter(pin, pulses_per_kwh=1000, debounce_ms=0, store=S0TotalStore(port.flash),
                          ticks_ms=lambda: meter_ms[0])
        return DeviceApp(port, settings, co2_sensor=None, meter=meter), pin

    def readings(app: DeviceApp) -> list[Reading]:
        return [verify_reading(app.outbox.read(record), app.key.public_key) for record in app.outbox.pending()]

    app, pin = boot()
    for _ in range(3):
        for _ in range(250):
            pin.pulse()
        meter_ms[0] += 60_000
        while app.measure_if_due() is None:
            time.sleep(0.002)
    first = readings(app)
    assert [(r.energy_wh, bool(r.flags & FLAG_METER_RESET)) for r in first] == [(250, True), (500, False), (750, False)]
    app.shutdown()
    rebooted, pin = boot()  # same flash: the count continues, and no reset is claimed
    pin.pulse()
    meter_ms[0] += 60_000
    while rebooted.measure_if_due() is None:
        time.sleep(0.002)
    last = readings(rebooted)[-1]
    assert (last.energy_wh, bool(last.flags & FLAG_METER_RESET)) == (751, False)
    assert last.seq > first[-1].seq  # (the next reserved block of sequence numbers)
    rebooted.shutdown()
