"""A Sensirion SCD40/SCD41 CO2 sensor emulated at the I2C bus level.

``SCD4xEmulator`` *is* an I2C bus (``simulators.i2c_bus.I2CBus``) with the sensor at 0x62, so one object
serves the firmware driver (MicroPython ``machine.I2C`` calls) and Adafruit's CircuitPython driver (``busio.I2C``
calls with ``try_lock``/``start=``/``end=``). Other emulated chips can be attached to it.

What it models (datasheet v1.3, execution times per Table 9; reinit 30 ms as in v1.7):

* the command set and the idle / periodic / low-power periodic / sleep state machine; in periodic mode
  only read_measurement, get_data_ready_status, stop_periodic_measurement and set/get ambient pressure are
  accepted, any other command is NACKed (``OSError(EIO)``);
* Sensirion CRC-8 on every word it sends, and a check of the CRC of every word written to it (a bad CRC is
  NACKed and the command is not executed);
* execution times on an injectable clock (emulated seconds = ``(clock() - clock_at_start) * time_scale``):
  while a command executes the sensor does not acknowledge its address (``OSError(ENODEV)``), so a driver that
  reads too early fails as on the real part; a reply can be read once;
* new measurements every 5 s (30 s in low-power mode) after a start; read_measurement empties the buffer;
  reading with no measurement available is NACKed; single shot (5 s) and RHT-only (50 ms, CO2 word 0) on the
  SCD41/SCD43;
* settings in RAM and EEPROM (persist, reinit, factory reset, power cycle), temperature offset (the sensing
  element runs 4 °C above ambient, so the default 4 °C offset reports ambient), forced recalibration (needs
  3 minutes of measuring since power-up, else 0xFFFF), self-test, serial number, variant;
* signals: a daily cycle per scenario ("office", "greenhouse", "boiler_room") plus seeded noise;
* a closed chamber (``emulator.chamber = ChamberSession(...)``, the chamber scenario): while the chamber is
  closed, the sensor sits in its headspace and the CO2 changes as a given surface flux dictates (ideal gas,
  dC/dt = F R T A / (P V)), linearly or approaching a plateau; outside the closure, the scenario's air;
* faults (``emulator.faults``): CRC errors, NACKs, disconnection, stalled measurements (never ready),
  stuck values, failing self-test.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from simulators.i2c_bus import I2CBus, I2CNack, address_nack, data_nack

SCD4X_ADDRESS = 0x62
DEFAULT_SERIAL = 0xF8969F073BBE  # datasheet v1.1 example: words f896 9f07 3bbe

Mode = Literal["idle", "periodic", "low_power", "sleep"]
Scenario = Literal["office", "greenhouse", "boiler_room"]
SCENARIOS: tuple[Scenario, ...] = ("office", "greenhouse", "boiler_room")
VARIANT_CODES = {"SCD40": 0x0, "SCD41": 0x1, "SCD43": 0x5}

SELF_HEATING_C = 4.0
FRC_MIN_MEASURING_S = 180.0
DATA_READY_WORD = 0x8006
NOT_READY_WORD = 0x8000


def crc8(data: bytes) -> int:
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_words(*words: int) -> bytes:
    out = bytearray()
    for word in words:
        pair = bytes(((word >> 8) & 0xFF, word & 0xFF))
        out += pair
        out.append(crc8(pair))
    return bytes(out)


def temperature_raw(celsius: float) -> int:
    return max(0, min(0xFFFF, round((celsius + 45.0) * 65535 / 175)))


def humidity_raw(percent: float) -> int:
    return max(0, min(0xFFFF, round(percent * 65535 / 100)))


@dataclass(frozen=True)
class Sample:
    """One measurement as the sensor reports it (raw words) and the exact values they stand for."""

    time: float  # emulated seconds
    co2_ppm: int
    t_raw: int
    rh_raw: int

    @property
    def temperature_c(self) -> float:
        return -45 + 175 * self.t_raw / 65535

    @property
    def humidity_pct(self) -> float:
        return 100 * self.rh_raw / 65535

    @property
    def temperature_centi_c(self) -> int:
        """The datasheet formula rounded to the nearest hundredth (no ties occur)."""
        return -4500 + (35000 * self.t_raw + 65535) // 131070

    @property
    def humidity_centi_pct(self) -> int:
        return (20000 * self.rh_raw + 65535) // 131070

    def words(self) -> tuple[int, int, int]:
        return (self.co2_ppm, self.t_raw, self.rh_raw)


@dataclass
class Ambient:
    """The true air around the sensor."""

    co2_ppm: float
    temperature_c: float
    humidity_pct: float


def _bump(h: float, begin: float, end: float) -> float:
    """0 outside [begin, end], a half sine inside (peak 1 in the middle)."""
    if h <= begin or h >= end:
        return 0.0
    return math.sin(math.pi * (h - begin) / (end - begin))


def scenario_ambient(scenario: Scenario, hour: float) -> Ambient:
    """The noiseless signal of a scenario at a time of day (hours, any real; taken modulo 24)."""
    h = hour % 24.0
    if scenario == "office":
        occupancy = _bump(h, 8.0, 18.5) * (1.0 - 0.35 * _bump(h, 12.0, 13.5))  # lunch dip
        co2 = 420.0 + 780.0 * occupancy
        temp = 20.0 + 2.5 * occupancy + 0.7 * math.sin(2 * math.pi * (h - 9.0) / 24.0)
        rh = 45.0 - 7.0 * occupancy + 2.0 * math.sin(2 * math.pi * (h - 3.0) / 24.0)
        return Ambient(co2, temp, rh)
    if scenario == "greenhouse":
        daylight = _bump(h, 6.0, 20.0)
        co2 = 720.0 - 430.0 * daylight  # night respiration builds up, photosynthesis draws down
        temp = 15.5 + 14.0 * daylight
        rh = 90.0 - 32.0 * daylight
        return Ambient(co2, temp, rh)
    if scenario == "boiler_room":
        demand = 0.25 + 0.75 * max(_bump(h, 5.0, 9.5), _bump(h, 16.5, 22.5))
        firing = 0.5 + 0.5 * math.sin(2 * math.pi * h * 3.0)  # ~20-minute burner cycles
        duty = demand * firing
        co2 = 560.0 + 900.0 * duty
        temp = 27.0 + 9.0 * demand + 2.0 * duty
        rh = 32.0 - 9.0 * demand
        return Ambient(co2, temp, rh)
    raise ValueError(f"unknown scenario {scenario!r}")


GAS_CONSTANT = 8.31446261815324  # J mol⁻¹ K⁻¹ (N_A k, exact since the 2019 SI)


@dataclass
class ChamberSession:
    """A closed chamber over a surface that emits (flux > 0) or takes up (flux < 0) CO2.

    From ``closed_at`` (emulated seconds) for ``duration_s`` the sensor measures the headspace: it starts at
    the scenario's CO2 at closure (or ``start_ppm``) and changes at dC/dt = F R T A / (P V) ppm/s, F in µmol
    m⁻² s⁻¹. With ``saturation_s`` the rise bends towards a plateau, C0 + dC/dt τ (1 - exp(-t/τ)), as a real
    chamber's does when the headspace builds up against the soil gradient (the nonlinear case)."""

    flux_umol_m2_s: float
    volume_ml: int
    area_cm2: int
    closed_at: float = 0.0
    duration_s: float = 180.0
    pressure_pa: int = 101325
    temperature_c: float | None = None  # None: the scenario's temperature at closure
    start_ppm: float | None = None
    saturation_s: float | None = None

    def slope_ppm_s(self, temperature_c: float) -> float:
        kelvin = temperature_c + 273.15
        return (self.flux_umol_m2_s * GAS_CONSTANT * kelvin * self.area_cm2 * 1e-4
                / (self.pressure_pa * self.volume_ml * 1e-6))

    def closed(self, t: float) -> bool:
        return self.closed_at <= t < self.closed_at + self.duration_s


@dataclass
class SCD4xFaults:
    """Faults to inject. Counters are consumed as they fire; rates draw from the emulator's seeded RNG."""

    crc_errors: int = 0  # corrupt the next N replies (one data bit flipped, so a word's CRC fails)
    crc_error_rate: float = 0.0
    nack: int = 0  # do not acknowledge the next N transfers (address NACK)
    nack_rate: float = 0.0
    disconnected: bool = False  # no chip at the address: every transfer and scan fails
    not_ready: bool = False  # measurements stall: data-ready stays false, read_measurement is NACKed
    stuck: bool = False  # every new measurement repeats the last one's raw words
    self_test_fails: bool = False


@dataclass
class Settings:
    temperature_offset_word: int = 1498  # round(4.0 * 65535 / 175): 4 °C
    altitude_m: int = 0
    asc_enabled: bool = True
    asc_target_ppm: int = 400
    asc_initial_period_h: int = 44
    asc_standard_period_h: int = 156

    def copy(self) -> Settings:
        return dataclasses.replace(self)


@dataclass(frozen=True)
class _Command:
    name: str
    exec_ms: float
    in_periodic: bool
    args: tuple[int, ...]  # accepted argument word counts
    single_shot: bool = False


COMMANDS: dict[int, _Command] = {
    0x21B1: _Command("start_periodic_measurement", 0, False, (0,)),
    0x21AC: _Command("start_low_power_periodic_measurement", 0, False, (0,)),
    0xEC05: _Command("read_measurement", 1, True, (0,)),
    0x3F86: _Command("stop_periodic_measurement", 500, True, (0,)),
    0x241D: _Command("set_temperature_offset", 1, False, (1,)),
    0x2318: _Command("get_temperature_offset", 1, False, (0,)),
    0x2427: _Command("set_sensor_altitude", 1, False, (1,)),
    0x2322: _Command("get_sensor_altitude", 1, False, (0,)),
    0xE000: _Command("ambient_pressure", 1, True, (0, 1)),
    0x362F: _Command("perform_forced_recalibration", 400, False, (1,)),
    0x2416: _Command("set_automatic_self_calibration_enabled", 1, False, (1,)),
    0x2313: _Command("get_automatic_self_calibration_enabled", 1, False, (0,)),
    0x243A: _Command("set_automatic_self_calibration_target", 1, False, (1,)),
    0x233F: _Command("get_automatic_self_calibration_target", 1, False, (0,)),
    0x2445: _Command("set_automatic_self_calibration_initial_period", 1, False, (1,)),
    0x2340: _Command("get_automatic_self_calibration_initial_period", 1, False, (0,)),
    0x244E: _Command("set_automatic_self_calibration_standard_period", 1, False, (1,)),
    0x234B: _Command("get_automatic_self_calibration_standard_period", 1, False, (0,)),
    0xE4B8: _Command("get_data_ready_status", 1, True, (0,)),
    0x3615: _Command("persist_settings", 800, False, (0,)),
    0x3682: _Command("get_serial_number", 1, False, (0,)),
    0x3639: _Command("perform_self_test", 10000, False, (0,)),
    0x3632: _Command("perform_factory_reset", 1200, False, (0,)),
    0x3646: _Command("reinit", 30, False, (0,)),
    0x219D: _Command("measure_single_shot", 5000, False, (0,), single_shot=True),
    0x2196: _Command("measure_single_shot_rht_only", 50, False, (0,), single_shot=True),
    0x36E0: _Command("power_down", 1, False, (0,), single_shot=True),
    0x36F6: _Command("wake_up", 30, False, (0,), single_shot=True),
    0x202F: _Command("get_sensor_variant", 1, False, (0,)),
}


@dataclass(frozen=True)
class ExecutedCommand:
    time: float  # emulated seconds when the command was received
    code: int
    name: str
    arg: int | None


@dataclass
class _State:
    mode: Mode = "idle"
    busy_until: float = 0.0
    reply: bytes | None = None
    buffer: Sample | None = None  # the measurement waiting to be read
    periodic_start: float = 0.0
    periodic_interval: float = 5.0
    produced: int = 0  # measurements produced since the periodic start
    single_shot_due: float | None = None
    single_shot_rht_only: bool = False
    measuring_since: float | None = None
    measured_s: float = 0.0  # measuring time since power-up, for FRC
    ambient_pressure_hpa: int = 1013
    frc_correction_ppm: int = 0
    ram: Settings = field(default_factory=Settings)


class SCD4xEmulator(I2CBus):
    """An SCD4x on an emulated I2C bus. See the module docstring."""

    def __init__(
        self,
        *,
        address: int = SCD4X_ADDRESS,
        scenario: Scenario = "office",
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
        start_hour: float = 9.0,
        noise: float = 1.0,
        serial_number: int = DEFAULT_SERIAL,
        variant: str = "SCD41",
        data_nack: Literal["raise", "count"] = "raise",
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
        if variant not in VARIANT_CODES:
            raise ValueError(f"variant must be one of {sorted(VARIANT_CODES)}")
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self._clock = clock
        self._t0 = clock()
        self.time_scale = time_scale
        super().__init__(data_nack=data_nack, clock=self.now)
        self.address = address
        self.scenario: Scenario = scenario
        self.start_hour = start_hour
        self.noise = noise
        self.serial_number = serial_number & 0xFFFF_FFFF_FFFF
        self.variant = variant
        self.faults = SCD4xFaults()
        self.eeprom = Settings()
        self.eeprom_writes = 0
        self.commands: list[ExecutedCommand] = []
        self.last_sample: Sample | None = None  # the newest measurement produced
        self.last_read: Sample | None = None  # the newest measurement read out over the bus
        self.ambient_override: Ambient | None = None  # set to hold the air at fixed values
        self.chamber: ChamberSession | None = None  # set to put the sensor in a closed chamber (see the class)
        self._rng = random.Random(seed)
        self._s = _State(ram=self.eeprom.copy())
        self.attach(address, _Target(self))

    # -- time and inspection ----------------------------------------------------------------------------------

    def now(self) -> float:
        """Emulated seconds since construction."""
        return (self._clock() - self._t0) * self.time_scale

    @property
    def mode(self) -> Mode:
        self._update()
        return self._s.mode

    @property
    def settings(self) -> Settings:
        """The settings in RAM (what the sensor uses now)."""
        return self._s.ram

    @property
    def frc_correction_ppm(self) -> int:
        return self._s.frc_correction_ppm

    @property
    def ambient_pressure_hpa(self) -> int:
        return self._s.ambient_pressure_hpa

    @property
    def data_ready(self) -> bool:
        self._update()
        return self._s.buffer is not None

    def hour_of_day(self, t: float | None = None) -> float:
        return (self.start_hour + (self.now() if t is None else t) / 3600.0) % 24.0

    def ambient(self, t: float | None = None) -> Ambient:
        if self.ambient_override is not None:
            return self.ambient_override
        now = self.now() if t is None else t
        chamber = self.chamber
        if chamber is not None and chamber.closed(now):
            return self._chamber_air(chamber, now)
        return scenario_ambient(self.scenario, self.hour_of_day(t))

    def _chamber_air(self, chamber: ChamberSession, t: float) -> Ambient:
        outside = scenario_ambient(self.scenario, self.hour_of_day(chamber.closed_at))
        temperature = outside.temperature_c if chamber.temperature_c is None else chamber.temperature_c
        start = outside.co2_ppm if chamber.start_ppm is None else chamber.start_ppm
        slope = chamber.slope_ppm_s(temperature)
        elapsed = t - chamber.closed_at
        if chamber.saturation_s is None:
            co2 = start + slope * elapsed
        else:
            co2 = start + slope * chamber.saturation_s * (1 - math.exp(-elapsed / chamber.saturation_s))
        return Ambient(max(0.0, co2), temperature, outside.humidity_pct)

    def power_cycle(self) -> None:
        """Power off and on: RAM settings reload from EEPROM, measurements and FRC history of RAM are lost."""
        s = self._s
        self._s = _State(ram=self.eeprom.copy(), frc_correction_ppm=s.frc_correction_ppm)
        self._s.busy_until = self.now() + 0.030  # power-up time

    # -- the sensor ------------------------------------------------------------------------------------------

    def _update(self) -> None:
        """Produce the measurements that are due by now."""
        s = self._s
        now = self.now()
        if s.mode in ("periodic", "low_power") and not self.faults.not_ready:
            due = int((now - s.periodic_start) / s.periodic_interval)
            if due > s.produced:
                s.produced = due
                s.buffer = self._measure(s.periodic_start + due * s.periodic_interval, rht_only=False)
        if s.single_shot_due is not None and now >= s.single_shot_due:
            if not self.faults.not_ready:
                s.buffer = self._measure(s.single_shot_due, rht_only=s.single_shot_rht_only)
            s.single_shot_due = None

    def _measure(self, t: float, rht_only: bool) -> Sample:
        if self.faults.stuck and self.last_sample is not None:
            sample = Sample(t, *self.last_sample.words())
        else:
            air = self.ambient(t)
            s = self._s
            noise = self.noise
            offset_c = s.ram.temperature_offset_word * 175 / 65535
            co2 = air.co2_ppm + s.frc_correction_ppm + self._rng.gauss(0.0, 8.0) * noise
            temp = air.temperature_c + SELF_HEATING_C - offset_c + self._rng.gauss(0.0, 0.04) * noise
            rh = air.humidity_pct + self._rng.gauss(0.0, 0.25) * noise
            co2_word = 0 if rht_only else max(0, min(40000, round(co2)))
            sample = Sample(t, co2_word, temperature_raw(temp), humidity_raw(max(0.0, min(100.0, rh))))
        self.last_sample = sample
        return sample

    def _probe(self) -> bool:
        if self.faults.disconnected:
            return False
        self._update()
        s = self._s
        return s.mode != "sleep" and self.now() >= s.busy_until

    def _check_transfer(self) -> None:
        f = self.faults
        if f.disconnected:
            raise address_nack("sensor disconnected")
        if f.nack > 0:
            f.nack -= 1
            raise address_nack("injected NACK")
        if f.nack_rate and self._rng.random() < f.nack_rate:
            raise address_nack("injected NACK")

    def _write(self, data: bytes) -> None:
        self._check_transfer()
        self._update()
        s = self._s
        now = self.now()
        if s.mode == "sleep":
            if data[:2] == b"\x36\xf6":
                s.mode = "idle"
                s.busy_until = now + COMMANDS[0x36F6].exec_ms / 1000
                self.commands.append(ExecutedCommand(now, 0x36F6, "wake_up", None))
            raise address_nack("asleep (wake_up is not acknowledged)")
        if now < s.busy_until:
            raise address_nack(f"busy for {(s.busy_until - now) * 1000:.1f} ms more")
        if len(data) < 2:
            raise data_nack("incomplete command", acked=len(data))
        code = (data[0] << 8) | data[1]
        cmd = COMMANDS.get(code)
        if cmd is None:
            raise data_nack(f"unknown command {code:#06x}", acked=1)
        if s.mode in ("periodic", "low_power") and not cmd.in_periodic:
            raise data_nack(f"{cmd.name} is not allowed in periodic measurement mode", acked=1)
        if cmd.single_shot and self.variant == "SCD40":
            raise data_nack(f"{cmd.name} is not supported by the SCD40", acked=1)
        if code == 0x36F6:
            raise data_nack("wake_up while awake", acked=1)
        rest = data[2:]
        if len(rest) % 3 != 0 or len(rest) // 3 not in cmd.args:
            raise data_nack(f"{cmd.name} takes {cmd.args} argument words, got {len(rest)} bytes", acked=2)
        arg: int | None = None
        if rest:
            if crc8(rest[:2]) != rest[2]:
                raise data_nack(f"bad CRC on the argument of {cmd.name}", acked=4)
            arg = (rest[0] << 8) | rest[1]
        s.reply = None
        self.commands.append(ExecutedCommand(now, code, cmd.name, arg))
        s.busy_until = now + cmd.exec_ms / 1000
        self._execute(code, arg, now)

    def _execute(self, code: int, arg: int | None, now: float) -> None:
        s = self._s
        ram = s.ram

        def reply(*words: int) -> None:
            s.reply = encode_words(*words)

        if code in (0x21B1, 0x21AC):
            s.mode = "periodic" if code == 0x21B1 else "low_power"
            s.periodic_start = now
            s.periodic_interval = 5.0 if code == 0x21B1 else 30.0
            s.produced = 0
            s.measuring_since = now
            s.buffer = None  # a measurement left from before the start is discarded
        elif code == 0x3F86:
            if s.mode in ("periodic", "low_power"):
                self._stop_measuring(now)
            s.mode = "idle"
        elif code == 0xEC05:
            if s.buffer is not None:
                self.last_read = s.buffer
                reply(*s.buffer.words())
                s.buffer = None
        elif code == 0xE4B8:
            reply(DATA_READY_WORD if s.buffer is not None else NOT_READY_WORD)
        elif code == 0x241D:
            assert arg is not None
            ram.temperature_offset_word = arg
        elif code == 0x2318:
            reply(ram.temperature_offset_word)
        elif code == 0x2427:
            assert arg is not None
            ram.altitude_m = arg
        elif code == 0x2322:
            reply(ram.altitude_m)
        elif code == 0xE000:
            if arg is None:
                reply(s.ambient_pressure_hpa)
            else:
                s.ambient_pressure_hpa = arg
        elif code == 0x362F:
            assert arg is not None
            if s.measured_s < FRC_MIN_MEASURING_S:
                reply(0xFFFF)
            else:
                current = round(self.ambient(now).co2_ppm) + s.frc_correction_ppm
                correction = max(-0x8000, min(0x7FFE, arg - current))
                s.frc_correction_ppm += correction
                reply(correction + 0x8000)
        elif code == 0x2416:
            ram.asc_enabled = bool(arg)
        elif code == 0x2313:
            reply(1 if ram.asc_enabled else 0)
        elif code == 0x243A:
            assert arg is not None
            ram.asc_target_ppm = arg
        elif code == 0x233F:
            reply(ram.asc_target_ppm)
        elif code == 0x2445:
            assert arg is not None
            ram.asc_initial_period_h = arg
        elif code == 0x2340:
            reply(ram.asc_initial_period_h)
        elif code == 0x244E:
            assert arg is not None
            ram.asc_standard_period_h = arg
        elif code == 0x234B:
            reply(ram.asc_standard_period_h)
        elif code == 0x3615:
            self.eeprom = ram.copy()
            self.eeprom_writes += 1
        elif code == 0x3682:
            sn = self.serial_number
            reply((sn >> 32) & 0xFFFF, (sn >> 16) & 0xFFFF, sn & 0xFFFF)
        elif code == 0x3639:
            reply(0x0001 if self.faults.self_test_fails else 0x0000)
        elif code == 0x3632:
            self.eeprom = Settings()
            self.eeprom_writes += 1
            s.ram = self.eeprom.copy()
            s.frc_correction_ppm = 0
        elif code == 0x3646:
            s.ram = self.eeprom.copy()
        elif code in (0x219D, 0x2196):
            s.single_shot_due = s.busy_until
            s.single_shot_rht_only = code == 0x2196
            s.buffer = None
            if code == 0x219D:
                s.measured_s += 5.0
        elif code == 0x36E0:
            s.mode = "sleep"
            s.buffer = None
        elif code == 0x202F:
            reply((VARIANT_CODES[self.variant] << 12) | 0x0440)

    def _stop_measuring(self, now: float) -> None:
        s = self._s
        if s.measuring_since is not None:
            s.measured_s += now - s.measuring_since
            s.measuring_since = None

    def _read(self, nbytes: int) -> bytes:
        self._check_transfer()
        self._update()
        s = self._s
        now = self.now()
        if s.mode == "sleep":
            raise address_nack("asleep")
        if now < s.busy_until:
            raise address_nack(f"busy for {(s.busy_until - now) * 1000:.1f} ms more")
        if s.reply is None:
            raise address_nack("nothing to read (no reply pending, or no measurement available)")
        data = bytearray(s.reply[:nbytes])
        s.reply = None
        f = self.faults
        corrupt = False
        if f.crc_errors > 0:
            f.crc_errors -= 1
            corrupt = True
        elif f.crc_error_rate and self._rng.random() < f.crc_error_rate:
            corrupt = True
        if corrupt and len(data) >= 2:
            word = self._rng.randrange(len(data) // 3) if len(data) >= 3 else 0
            data[3 * word + self._rng.randrange(2)] ^= 1 << self._rng.randrange(8)
        if len(data) < nbytes:
            data += b"\xff" * (nbytes - len(data))  # the master clocks in an idle (high) bus
        return bytes(data)


class _Target:
    """Adapts the emulator to the bus's target protocol (kept apart so the bus API stays the public one)."""

    def __init__(self, emulator: SCD4xEmulator) -> None:
        self._emulator = emulator

    def i2c_probe(self) -> bool:
        return self._emulator._probe()

    def i2c_write(self, data: bytes) -> None:
        self._emulator._write(data)

    def i2c_read(self, nbytes: int) -> bytes:
        return self._emulator._read(nbytes)


__all__ = [
    "COMMANDS",
    "DEFAULT_SERIAL",
    "SCD4X_ADDRESS",
    "SCENARIOS",
    "Ambient",
    "ChamberSession",
    "I2CNack",
    "SCD4xEmulator",
    "SCD4xFaults",
    "Sample",
    "Settings",
    "encode_words",
    "scenario_ambient",
]
