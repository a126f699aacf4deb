"""A chamber session on the device: the app on a host port whose clock runs 10× (so a 3-minute closure takes
18 s), the real SCD4x driver over the emulator's chamber scenario, a real Mosquitto. The device publishes its
samples as signed readings and one signed flux record on its own topic; the record verifies under the device's
key, gives back the chamber's flux with its sign, and traces to the published readings (seq range and digest)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from carbontrace_device import config
from carbontrace_device.app import FLUX_SLOT_SIZE, DeviceApp
from carbontrace_device.scd4x import SCD4X

from carbontrace.servers import wait_until
from carbontrace_protocol import errors, flux, topics
from carbontrace_protocol.verify import verify_flux, verify_reading
from simulators.host_port import HostPort
from simulators.scd4x_emulator import ChamberSession, SCD4xEmulator
from tests.conftest import MosquittoBroker
from tests.firmware.fw_mqtt_helpers import Subscriber, device_settings

SITE = "site-c"
SCALE = 10.0
SOIL = dict(volume_ml=20000, area_cm2=1000, pressure_pa=101325)


class ScaledPort(HostPort):
    """The host port with its monotonic and wall clocks running SCALE times faster (the emulated sensor's time)."""

    def __init__(self, flash_root: Path, synced: bool = True) -> None:
        self._m0 = time.monotonic()
        self._wall0 = 1764126000
        super().__init__(str(flash_root), synced=synced)

    def _emulated_s(self) -> float:
        return (time.monotonic() - self._m0) * SCALE

    def ticks_ms(self) -> int:
        return int(self._emulated_s() * 1000)

    def sleep_ms(self, ms: float) -> None:
        if ms > 0:
            time.sleep(ms / 1000 / SCALE)

    def wall_time(self) -> int | None:
        if not self._synced:
            return None
        return self._wall0 + int(self._emulated_s())


def make_app(tmp_path: Path, broker: MosquittoBroker, device: str, synced: bool = True,
             **overrides: Any) -> tuple[DeviceApp, SCD4xEmulator]:
    port = ScaledPort(tmp_path / "flash", synced=synced)
    settings = config.load(port.flash, {
        **device_settings(broker, tmp_path / "flash", SITE, device),
        "site_id": SITE, "device_id": device, "meter": "none", "measure_interval_ms": 60000,
        "status_interval_ms": 600000, "keepalive_s": 60, **overrides,
    })
    emu = SCD4xEmulator(time_scale=SCALE, scenario="greenhouse", start_hour=12.0, seed=3, noise=0.2)
    co2 = SCD4X(emu, sleep_ms=port.sleep_ms)
    co2.start_measuring(False)
    return DeviceApp(port, settings, co2_sensor=co2, poll_interval_ms=20), emu


def run_until(app: DeviceApp, cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"app did not get there within {timeout:.1f} s")
        app.run_once()
        time.sleep(0.002)


@pytest.mark.parametrize("true_flux", [-4.0, 2.5])
def test_a_chamber_session_publishes_a_signed_flux_that_traces_to_its_readings(
    tmp_path: Path, mosquitto: MosquittoBroker, true_flux: float
) -> None:
    device = "dev-chamber-up" if true_flux < 0 else "dev-chamber-down"
    app, emu = make_app(tmp_path, mosquitto, device, chamber_volume_ml=SOIL["volume_ml"],
                        chamber_area_cm2=SOIL["area_cm2"], chamber_duration_s=180)
    assert app.flux_topic == topics.flux_topic(SITE, device) == f"carbontrace/v1/{SITE}/{device}/flux"
    sub = Subscriber(mosquitto.add_gateway(SITE, f"paho-{device}"), f"carbontrace/v1/{SITE}/{device}/#")
    run_until(app, lambda: app.readings_made >= 1 and app.mqtt.is_connected())
    emu.chamber = ChamberSession(true_flux, closed_at=emu.now(), duration_s=400.0, temperature_c=25.0, **SOIL)
    assert app.start_chamber()
    run_until(app, lambda: app.fluxes_made == 1 and app.flux_outbox.depth() == 0 and app.outbox.depth() == 0)
    wait_until(lambda: len(sub.payloads("/flux")) == 1)
    signed = sub.payloads("/flux")[0]
    record = verify_flux(signed, app.key.public_key)
    assert record == app.last_flux and record.device_id == device
    assert record.qa == flux.QA_OK, record
    assert (record.flux_e3 < 0) == (true_flux < 0)
    assert abs(record.flux_e3 / 1000 - true_flux) < 0.1 * abs(true_flux) + 3 * record.flux_se_e3 / 1000
    assert (record.volume_ml, record.area_cm2, record.pressure_pa) == (20000, 1000, 101325)
    temps = [r.temperature_centi_c for r in (verify_reading(p, app.key.public_key) for p in sub.payloads("/reading"))
             if record.seq[0] <= r.seq <= record.seq[1]]
    # the sensor's own temperature of the headspace (25 °C; outside, the greenhouse is at 29.5 °C at noon): within
    # 1 °C, since on a loaded machine a value produced around the closure can be among the samples
    assert abs(record.temp_mc - 25000) < 1000, temps
    # the flux names the readings that were its samples, and their values hash to its digest
    wait_until(lambda: len(sub.payloads("/reading")) >= record.seq[1] + 1)
    readings = {r.seq: r for r in (verify_reading(p, app.key.public_key) for p in sub.payloads("/reading"))}
    used = [readings[s] for s in range(record.seq[0], record.seq[1] + 1)]
    samples: list[list[int]] = []
    for r in used:  # the device's rule (carbontrace_device/chamber.py): CO2, a time, later than the last sample
        t = r.timestamp - record.session[0] if r.timestamp is not None else None
        if t is not None and r.co2_ppm is not None and t >= 0 and (not samples or t > samples[-1][0]):
            samples.append([t, r.co2_ppm])
    assert len(samples) == record.n and record.n >= 10  # 36 at the 5 s cadence; fewer when a loaded host lags
    assert hashlib.sha256(cbor2.dumps(samples)).digest() == record.samples
    # a flux is not a reading, and nothing but the flux went out on the flux topic
    with pytest.raises(errors.MalformedReading):
        verify_reading(signed, app.key.public_key)
    assert len(signed) <= topics.MAX_FLUX_BYTES
    # after the session the device measures at its usual interval again
    assert app.chamber is None
    app.shutdown()
    sub.close()


def test_without_wall_time_or_geometry_no_session_starts(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    app, _emu = make_app(tmp_path, mosquitto, "dev-chamber-none", synced=False)
    assert not app.start_chamber(volume_ml=20000, area_cm2=1000)
    assert not app.start_chamber()  # no volume or area configured
    assert app.chamber_failures == {"time_not_synced": 1, "no_geometry": 1}
    assert app.chamber is None
    app.shutdown()


def test_the_flux_outbox_slot_holds_the_largest_record() -> None:
    assert FLUX_SLOT_SIZE - 16 >= topics.MAX_FLUX_BYTES and FLUX_SLOT_SIZE % 32 == 0


def test_config_refuses_a_bad_chamber_geometry(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="chamber_volume_ml"):
        config.load(None, {"chamber_volume_ml": 0})
    with pytest.raises(config.ConfigError, match="chamber_interval_ms"):
        config.load(None, {"chamber_interval_ms": -5})
