"""Sensirion SCD40/SCD41 CO2, temperature and humidity sensor on I2C. MicroPython-safe.

The bus is injected (``machine.I2C``-like: ``writeto(addr, buf)``, ``readfrom_into(addr, buf)``; a NACK raises
``OSError``, or, as MicroPython's soft I2C does for a data byte, ``writeto`` returns fewer ACKs than bytes).
Every data word read or written carries its Sensirion CRC-8, and every reply's CRC is checked.

Timing follows the datasheet (execution times of Table 9 of v1.3; reinit uses the 30 ms of v1.7): the driver
waits after each command through the injected ``sleep_ms`` before reading or sending the next one.

Errors are typed and name the device and address; reads never return a made-up zero:

* ``SCD4XNackError``: the sensor did not acknowledge (absent, busy, asleep, or the command is not allowed in
  the current mode: only read_measurement, data-ready, stop and ambient pressure work during periodic
  measurement) after ``1 + retries`` attempts.
* ``SCD4XCRCError``: a reply word's CRC was wrong after ``1 + retries`` attempts (replies that consume
  state on the sensor, like a measurement or a recalibration result, are not re-requested: one attempt).
* ``SCD4XNotReady``: ``read_measurement`` found no new measurement in the sensor's buffer.
* ``SCD4XSelfTestError``, ``SCD4XCalibrationError``, ``SCD4XStuckError``: the sensor answered, but reported
  a malfunction, a failed recalibration, or the same raw measurement ``stuck_limit`` times in a row.

Units: CO2 in ppm, temperature in hundredths of a degree Celsius, relative humidity in hundredths of a
percent, all integers, converted with integer arithmetic from the datasheet formulas
T = -45 + 175 * raw / 65535 and RH = 100 * raw / 65535 (rounded to the nearest hundredth; no ties exist).
"""

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from carbontrace_device.crc import crc8_sensirion
from carbontrace_device.sensor_errors import SensorError

DEFAULT_ADDRESS = const(0x62)

# Commands (datasheet v1.3 Table 9; variant and power commands from v1.4+)
CMD_START_PERIODIC = const(0x21B1)
CMD_READ_MEASUREMENT = const(0xEC05)
CMD_STOP_PERIODIC = const(0x3F86)
CMD_SET_TEMPERATURE_OFFSET = const(0x241D)
CMD_GET_TEMPERATURE_OFFSET = const(0x2318)
CMD_SET_SENSOR_ALTITUDE = const(0x2427)
CMD_GET_SENSOR_ALTITUDE = const(0x2322)
CMD_AMBIENT_PRESSURE = const(0xE000)  # set: write a word; get: write the command alone, then read
CMD_FORCED_RECALIBRATION = const(0x362F)
CMD_SET_ASC_ENABLED = const(0x2416)
CMD_GET_ASC_ENABLED = const(0x2313)
CMD_START_LOW_POWER_PERIODIC = const(0x21AC)
CMD_GET_DATA_READY = const(0xE4B8)
CMD_PERSIST_SETTINGS = const(0x3615)
CMD_GET_SERIAL_NUMBER = const(0x3682)
CMD_SELF_TEST = const(0x3639)
CMD_FACTORY_RESET = const(0x3632)
CMD_REINIT = const(0x3646)
CMD_MEASURE_SINGLE_SHOT = const(0x219D)
CMD_MEASURE_SINGLE_SHOT_RHT_ONLY = const(0x2196)
CMD_POWER_DOWN = const(0x36E0)
CMD_WAKE_UP = const(0x36F6)
CMD_GET_SENSOR_VARIANT = const(0x202F)

# Execution times in milliseconds
T_COMMAND_MS = const(1)
T_STOP_PERIODIC_MS = const(500)
T_FORCED_RECALIBRATION_MS = const(400)
T_PERSIST_SETTINGS_MS = const(800)
T_SELF_TEST_MS = const(10000)
T_FACTORY_RESET_MS = const(1200)
T_REINIT_MS = const(30)
T_SINGLE_SHOT_MS = const(5000)
T_SINGLE_SHOT_RHT_MS = const(50)
T_WAKE_UP_MS = const(30)
PERIODIC_INTERVAL_MS = const(5000)
LOW_POWER_PERIODIC_INTERVAL_MS = const(30000)

_FRC_FAILED = const(0xFFFF)
_VARIANTS = {0: "SCD40", 1: "SCD41", 5: "SCD43"}


class SCD4XError(SensorError):
    def __init__(self, address, detail):
        SensorError.__init__(self, "SCD4x", "I2C", address, detail)


class SCD4XNackError(SCD4XError):
    pass


class SCD4XCRCError(SCD4XError):
    pass


class SCD4XNotReady(SCD4XError):
    pass


class SCD4XSelfTestError(SCD4XError):
    pass


class SCD4XCalibrationError(SCD4XError):
    pass


class SCD4XStuckError(SCD4XError):
    pass


def temperature_centi_c(raw):
    """Datasheet T = -45 + 175 * raw / 65535 in hundredths of a degree, rounded to nearest (integer math)."""
    return -4500 + (35000 * raw + 65535) // 131070


def humidity_centi_pct(raw):
    """Datasheet RH = 100 * raw / 65535 in hundredths of a percent, rounded to nearest (integer math)."""
    return (20000 * raw + 65535) // 131070


def _default_sleep_ms():
    sleep_ms = getattr(time, "sleep_ms", None)
    if sleep_ms is not None:
        return sleep_ms

    def _sleep_ms(ms):
        time.sleep(ms / 1000)

    return _sleep_ms


class SCD4X:
    """SCD4x driver. ``retries``: extra attempts after a NACK or a CRC error (so ``1 + retries`` in all).

    ``stuck_limit``: when > 0, ``read_measurement`` raises ``SCD4XStuckError`` once the sensor has returned
    the same three raw words that many times in a row (a live sensor's raw temperature and humidity words
    change from one measurement to the next; 0 turns the check off).
    """

    def __init__(self, i2c, address=DEFAULT_ADDRESS, sleep_ms=None, retries=3, stuck_limit=0):
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self._i2c = i2c
        self.address = address
        self._sleep_ms = sleep_ms if sleep_ms is not None else _default_sleep_ms()
        self.retries = retries
        self.stuck_limit = stuck_limit
        # Scratch buffers, allocated once
        self._wbuf = bytearray(5)
        self._rbuf = bytearray(9)
        wmv = memoryview(self._wbuf)
        rmv = memoryview(self._rbuf)
        self._w = (None, None, wmv[:2], None, None, wmv)
        self._r = (None, rmv[:3], None, rmv[:9])
        self._last_raw = None
        self._same_count = 0
        self._rht_only = False
        self.periodic = False  # the driver's view of the sensor's mode, for error messages

    # -- periodic measurement ------------------------------------------------------------------------------

    def start_periodic_measurement(self):
        """Start periodic measurement: a new measurement every 5 s."""
        self._command(CMD_START_PERIODIC, T_COMMAND_MS)
        self.periodic = True
        self._rht_only = False

    def start_low_power_periodic_measurement(self):
        """Start low-power periodic measurement: a new measurement about every 30 s."""
        self._command(CMD_START_LOW_POWER_PERIODIC, T_COMMAND_MS)
        self.periodic = True
        self._rht_only = False

    def start_measuring(self, self_calibration):
        """Start periodic measurement with automatic self-calibration (ASC) as configured. ASC assumes the
        sensor sees fresh air (~400 ppm) at least weekly: a greenhouse or a closed chamber never does, and
        ASC would drag its readings down, so it is a setting. Stops first: after a soft reset the sensor
        may still be measuring and would NACK the commands. The ASC setting is volatile (set at every start,
        never written to the EEPROM, which endures about 2000 writes)."""
        self.stop_periodic_measurement()
        self.set_automatic_self_calibration(self_calibration)
        self.start_periodic_measurement()

    def stop_periodic_measurement(self):
        """Stop periodic measurement (waits the 500 ms the sensor needs before it accepts other commands)."""
        self._command(CMD_STOP_PERIODIC, T_STOP_PERIODIC_MS)
        self.periodic = False

    def data_ready(self):
        """True when a new measurement waits in the sensor's buffer (lower 11 bits of the status word)."""
        return (self._read_words(CMD_GET_DATA_READY, 1, T_COMMAND_MS)[0] & 0x07FF) != 0

    def read_measurement(self):
        """Read and empty the measurement buffer: ``(co2_ppm, temperature_centi_c, humidity_centi_pct)``.

        After ``measure_single_shot_rht_only`` the CO2 field is ``None`` (the sensor reports 0 there, which is
        not a measurement). Raises ``SCD4XNotReady`` when the buffer is empty (call ``data_ready()`` first).
        """
        words = self._read_words(CMD_READ_MEASUREMENT, 3, T_COMMAND_MS, retry_reply=False, empty_is_not_ready=True)
        co2_raw, t_raw, rh_raw = words
        if co2_raw == 0 and t_raw == 0 and rh_raw == 0:
            raise SCD4XNotReady(self.address, "the sensor returned an all-zero measurement")
        if self.stuck_limit > 0:
            if words == self._last_raw:
                self._same_count += 1
            else:
                self._last_raw = words
                self._same_count = 1
            if self._same_count >= self.stuck_limit:
                raise SCD4XStuckError(
                    self.address,
                    "the same raw measurement %04x %04x %04x %d times in a row"
                    % (co2_raw, t_raw, rh_raw, self._same_count),
                )
        co2 = None if self._rht_only else co2_raw
        return (co2, temperature_centi_c(t_raw), humidity_centi_pct(rh_raw))

    # -- single shot (SCD41, SCD43) -------------------------------------------------------------------------

    def measure_single_shot(self, wait=True):
        """Trigger one CO2/T/RH measurement; with ``wait`` sleep the 5000 ms it takes, then ``read_measurement``."""
        self._command(CMD_MEASURE_SINGLE_SHOT, T_SINGLE_SHOT_MS if wait else 0)
        self._rht_only = False

    def measure_single_shot_rht_only(self, wait=True):
        """Trigger one T/RH-only measurement (50 ms); ``read_measurement`` then gives CO2 as ``None``."""
        self._command(CMD_MEASURE_SINGLE_SHOT_RHT_ONLY, T_SINGLE_SHOT_RHT_MS if wait else 0)
        self._rht_only = True

    def power_down(self):
        self._command(CMD_POWER_DOWN, T_COMMAND_MS)

    def wake_up(self):
        """Wake from power-down. The sensor does not acknowledge this command, so a NACK is expected."""
        self._fill(CMD_WAKE_UP, None)
        try:
            self._i2c.writeto(self.address, self._w[2])
        except OSError:
            pass
        self._sleep_ms(T_WAKE_UP_MS)

    # -- identification and diagnostics ---------------------------------------------------------------------

    def serial_number(self):
        """The 48-bit serial number as an int."""
        w0, w1, w2 = self._read_words(CMD_GET_SERIAL_NUMBER, 3, T_COMMAND_MS)
        return (w0 << 32) | (w1 << 16) | w2

    def sensor_variant(self):
        """The variant name: SCD40, SCD41, SCD43, or SCD4x(<code>) from bits 15:12 of the variant word."""
        code = self._read_words(CMD_GET_SENSOR_VARIANT, 1, T_COMMAND_MS)[0] >> 12
        return _VARIANTS.get(code, "SCD4x(%d)" % code)

    def self_test(self):
        """Run the 10 s self-test; returns True, or raises ``SCD4XSelfTestError`` with the sensor's word."""
        word = self._read_words(CMD_SELF_TEST, 1, T_SELF_TEST_MS, retry_reply=False)[0]
        if word != 0:
            raise SCD4XSelfTestError(self.address, "self-test reported malfunction 0x%04x" % word)
        return True

    # -- settings -------------------------------------------------------------------------------------------

    def set_temperature_offset(self, offset_centi_c):
        """Temperature offset in hundredths of a degree (0 to 17500), subtracted from the sensor's reading."""
        if offset_centi_c < 0 or offset_centi_c > 17500:
            raise ValueError("temperature offset must be 0..17500 centi-degrees")
        word = (offset_centi_c * 131070 + 17500) // 35000  # round(offset * 65535 / 17500)
        self._write_word(CMD_SET_TEMPERATURE_OFFSET, word, T_COMMAND_MS)

    def get_temperature_offset(self):
        word = self._read_words(CMD_GET_TEMPERATURE_OFFSET, 1, T_COMMAND_MS)[0]
        return (35000 * word + 65535) // 131070

    def set_sensor_altitude(self, meters):
        """Altitude above sea level for pressure compensation, 0 to 3000 m (ignored once a pressure is set)."""
        if meters < 0 or meters > 3000:
            raise ValueError("altitude must be 0..3000 m")
        self._write_word(CMD_SET_SENSOR_ALTITUDE, meters, T_COMMAND_MS)

    def get_sensor_altitude(self):
        return self._read_words(CMD_GET_SENSOR_ALTITUDE, 1, T_COMMAND_MS)[0]

    def set_ambient_pressure(self, hpa):
        """Ambient pressure in hPa (700 to 1200); allowed during periodic measurement; overrides altitude."""
        if hpa < 700 or hpa > 1200:
            raise ValueError("ambient pressure must be 700..1200 hPa")
        self._write_word(CMD_AMBIENT_PRESSURE, hpa, T_COMMAND_MS)

    def get_ambient_pressure(self):
        """The ambient pressure compensation in hPa."""
        return self._read_words(CMD_AMBIENT_PRESSURE, 1, T_COMMAND_MS)[0]

    def forced_recalibration(self, target_co2_ppm):
        """Forced recalibration to a reference CO2 concentration; returns the correction applied in ppm.

        The sensor must have measured for 3 minutes in a stable reference atmosphere, then been stopped
        (call ``stop_periodic_measurement`` first). A failed recalibration raises ``SCD4XCalibrationError``.
        """
        if target_co2_ppm < 0 or target_co2_ppm > 0xFFFF:
            raise ValueError("target CO2 must be 0..65535 ppm")
        word = self._read_words(
            CMD_FORCED_RECALIBRATION, 1, T_FORCED_RECALIBRATION_MS, arg=target_co2_ppm, retry_reply=False
        )[0]
        if word == _FRC_FAILED:
            raise SCD4XCalibrationError(self.address, "forced recalibration failed (0xffff)")
        return word - 0x8000

    def set_automatic_self_calibration(self, enabled):
        self._write_word(CMD_SET_ASC_ENABLED, 1 if enabled else 0, T_COMMAND_MS)

    def get_automatic_self_calibration(self):
        return self._read_words(CMD_GET_ASC_ENABLED, 1, T_COMMAND_MS)[0] != 0

    def persist_settings(self):
        """Store offset, altitude and ASC settings in EEPROM (800 ms; EEPROM endures about 2000 writes)."""
        self._command(CMD_PERSIST_SETTINGS, T_PERSIST_SETTINGS_MS)

    def reinit(self):
        """Reload the settings from EEPROM (the sensor must be idle)."""
        self._command(CMD_REINIT, T_REINIT_MS)

    def factory_reset(self):
        """Erase the EEPROM settings and the FRC/ASC history (1200 ms)."""
        self._command(CMD_FACTORY_RESET, T_FACTORY_RESET_MS)

    # -- transfers ------------------------------------------------------------------------------------------

    def _fill(self, cmd, arg):
        buf = self._wbuf
        buf[0] = cmd >> 8
        buf[1] = cmd & 0xFF
        if arg is None:
            return 2
        buf[2] = (arg >> 8) & 0xFF
        buf[3] = arg & 0xFF
        buf[4] = crc8_sensirion(buf, 2, 4)
        return 5

    def _send(self, cmd, arg):
        """One write; returns None on success or an error text on a NACK."""
        n = self._fill(cmd, arg)
        try:
            acks = self._i2c.writeto(self.address, self._w[n])
        except OSError as err:
            return "command 0x%04x not acknowledged (%s)%s" % (cmd, _errno_name(err), self._mode_hint())
        if isinstance(acks, int) and acks < n:
            return "command 0x%04x: %d of %d bytes acknowledged%s" % (cmd, acks, n, self._mode_hint())
        return None

    def _mode_hint(self):
        if self.periodic:
            return "; only read_measurement, data-ready, stop and ambient pressure work in periodic mode"
        return ""

    def _command(self, cmd, delay_ms, arg=None):
        attempt = 0
        while True:
            attempt += 1
            problem = self._send(cmd, arg)
            if problem is None:
                break
            if attempt > self.retries:
                raise SCD4XNackError(self.address, "%s after %d attempts" % (problem, attempt))
            self._sleep_ms(T_COMMAND_MS)
        if delay_ms:
            self._sleep_ms(delay_ms)

    def _write_word(self, cmd, word, delay_ms):
        self._command(cmd, delay_ms, word)

    def _read_words(self, cmd, count, delay_ms, arg=None, retry_reply=True, empty_is_not_ready=False):
        """Send ``cmd`` (with ``arg``), wait ``delay_ms``, read ``count`` words and check their CRCs.

        A NACK of the command is retried. A NACK or a CRC error of the reply is retried (command and read)
        only when ``retry_reply``: some replies consume state on the sensor and cannot be asked for twice.
        """
        nbytes = 3 * count
        rview = self._r[count]
        rbuf = self._rbuf
        attempt = 0
        while True:
            attempt += 1
            problem = self._send(cmd, arg)
            if problem is None:
                self._sleep_ms(delay_ms)
                try:
                    self._i2c.readfrom_into(self.address, rview)
                except OSError as err:
                    if empty_is_not_ready:
                        raise SCD4XNotReady(
                            self.address, "no measurement available (read NACKed: %s)" % _errno_name(err)
                        )
                    problem = "reply to 0x%04x not acknowledged (%s)" % (cmd, _errno_name(err))
                    if not retry_reply:
                        raise SCD4XNackError(self.address, problem)
                if problem is None:
                    bad = -1
                    for i in range(0, nbytes, 3):
                        if crc8_sensirion(rbuf, i, i + 2) != rbuf[i + 2]:
                            bad = i
                            break
                    if bad < 0:
                        if count == 1:
                            return ((rbuf[0] << 8) | rbuf[1],)
                        return ((rbuf[0] << 8) | rbuf[1], (rbuf[3] << 8) | rbuf[4], (rbuf[6] << 8) | rbuf[7])
                    problem = "CRC mismatch in word %d of the reply to 0x%04x (got 0x%02x, want 0x%02x)" % (
                        bad // 3,
                        cmd,
                        rbuf[bad + 2],
                        crc8_sensirion(rbuf, bad, bad + 2),
                    )
                    if not retry_reply or attempt > self.retries:
                        raise SCD4XCRCError(self.address, "%s after %d attempt(s)" % (problem, attempt))
                elif attempt > self.retries:
                    raise SCD4XNackError(self.address, "%s after %d attempts" % (problem, attempt))
            elif attempt > self.retries:
                raise SCD4XNackError(self.address, "%s after %d attempts" % (problem, attempt))
            self._sleep_ms(T_COMMAND_MS)


def _errno_name(err):
    code = err.args[0] if err.args else None
    if code == 19:
        return "ENODEV"
    if code == 5:
        return "EIO"
    if code == 110 or code == 116:
        return "ETIMEDOUT"
    return "OSError %s" % (code,)
