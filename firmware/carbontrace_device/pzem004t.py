"""Peacefair PZEM-004T v3.0 energy meter over Modbus RTU (9600 8N1). MicroPython-safe.

The UART is injected (``machine.UART``-like: ``write(buf)``, ``read(n)`` returning bytes or None, ``any()``).
Frames carry CRC-16/MODBUS, low byte first. Input registers (function 0x04), from the manual:

====  ===================  =========================
reg   value                resolution
====  ===================  =========================
0     voltage              0.1 V
1-2   current (low, high)  0.001 A
3-4   power (low, high)    0.1 W
5-6   energy (low, high)   1 Wh
7     frequency            0.1 Hz
8     power factor         0.01
9     power alarm          0xFFFF alarm, 0x0000 none
====  ===================  =========================

Holding registers (functions 0x03 / 0x06): 1 = power alarm threshold (1 W), 2 = Modbus address (1..247).
Function 0x42 resets the energy counter. Address 0xF8 is the general address a single meter on the bus
answers to whatever its own address is.

Errors are typed (all ``PZEMError``, a ``SensorError``): ``PZEMTimeout`` (no byte), ``PZEMShortFrame``
(some bytes, then silence), ``PZEMCRCError``, ``PZEMAddressError`` (a reply from another slave),
``PZEMExceptionResponse`` (the meter answered with a Modbus exception; ``.code``), ``PZEMProtocolError``
(a well-formed reply that does not answer the request). ``retries`` re-sends a request after a timeout,
short frame or CRC error; exception responses are final.
"""

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from carbontrace_device.crc import crc16_modbus
from carbontrace_device.sensor_errors import SensorError

DEFAULT_ADDRESS = const(0x01)
GENERAL_ADDRESS = const(0xF8)

FC_READ_HOLDING = const(0x03)
FC_READ_INPUT = const(0x04)
FC_WRITE_SINGLE = const(0x06)
FC_CALIBRATE = const(0x41)
FC_RESET_ENERGY = const(0x42)

REG_ALARM_THRESHOLD = const(0x0001)
REG_ADDRESS = const(0x0002)

EXC_ILLEGAL_FUNCTION = const(0x01)
EXC_ILLEGAL_ADDRESS = const(0x02)
EXC_ILLEGAL_DATA = const(0x03)
EXC_SLAVE_ERROR = const(0x04)
_EXC_NAMES = {1: "illegal function", 2: "illegal address", 3: "illegal data", 4: "slave error"}

_INPUT_REGISTERS = const(10)
_MAX_FRAME = const(32)


class PZEMError(SensorError):
    def __init__(self, address, detail):
        SensorError.__init__(self, "PZEM-004T", "Modbus", address, detail)


class PZEMTimeout(PZEMError):
    pass


class PZEMShortFrame(PZEMError):
    pass


class PZEMCRCError(PZEMError):
    pass


class PZEMAddressError(PZEMError):
    pass


class PZEMProtocolError(PZEMError):
    pass


class PZEMExceptionResponse(PZEMError):
    def __init__(self, address, function, code):
        self.function = function
        self.code = code
        PZEMError.__init__(
            self,
            address,
            "exception 0x%02x (%s) in reply to function 0x%02x" % (code, _EXC_NAMES.get(code, "unknown"), function),
        )


class PowerReading:
    """One PZEM measurement, all integers in the meter's own resolution."""

    def __init__(
        self, voltage_deci_v, current_milli_a, power_deci_w, energy_wh, frequency_deci_hz, power_factor_centi, alarm
    ):
        self.voltage_deci_v = voltage_deci_v
        self.current_milli_a = current_milli_a
        self.power_deci_w = power_deci_w
        self.energy_wh = energy_wh
        self.frequency_deci_hz = frequency_deci_hz
        self.power_factor_centi = power_factor_centi
        self.alarm = alarm

    def __repr__(self):
        return (
            "PowerReading(voltage_deci_v=%d, current_milli_a=%d, power_deci_w=%d, energy_wh=%d, "
            "frequency_deci_hz=%d, power_factor_centi=%d, alarm=%s)"
            % (
                self.voltage_deci_v,
                self.current_milli_a,
                self.power_deci_w,
                self.energy_wh,
                self.frequency_deci_hz,
                self.power_factor_centi,
                self.alarm,
            )
        )


def decode_input_registers(regs):
    """A ``PowerReading`` from the 10 input registers (32-bit values are low word first)."""
    return PowerReading(
        regs[0],
        regs[1] | (regs[2] << 16),
        regs[3] | (regs[4] << 16),
        regs[5] | (regs[6] << 16),
        regs[7],
        regs[8],
        regs[9] != 0,
    )


def _ticks_fallback():
    return int(time.monotonic() * 1000)


def _sleep_fallback(ms):
    time.sleep(ms / 1000)


def _diff_fallback(a, b):
    return a - b


class PZEM004T:
    """PZEM-004T v3 driver. ``timeout_ms``: how long to wait for the first byte of a reply and for each
    following byte (the meter answers within about 100 ms at 9600 baud)."""

    def __init__(self, uart, address=DEFAULT_ADDRESS, timeout_ms=300, ticks_ms=None, sleep_ms=None, retries=1):
        if address < 1 or (address > 0xF7 and address != GENERAL_ADDRESS):
            raise ValueError("PZEM address must be 1..247 or 0xF8")
        self._uart = uart
        self.address = address
        self.timeout_ms = timeout_ms
        self.retries = retries
        self._ticks_ms = ticks_ms or getattr(time, "ticks_ms", None) or _ticks_fallback
        self._ticks_diff = getattr(time, "ticks_diff", None) or _diff_fallback
        self._sleep_ms = sleep_ms or getattr(time, "sleep_ms", None) or _sleep_fallback
        self._tx = bytearray(8)
        self._rx = bytearray(_MAX_FRAME)
        self._regs = [0] * _INPUT_REGISTERS

    # -- public operations ----------------------------------------------------------------------------------

    def read(self):
        """Read the 10 input registers; returns a ``PowerReading``."""
        regs = self._read_registers(FC_READ_INPUT, 0, _INPUT_REGISTERS)
        return decode_input_registers(regs)

    def reset_energy(self):
        """Zero the meter's energy counter (function 0x42)."""
        tx = self._tx
        tx[0] = self.address
        tx[1] = FC_RESET_ENERGY
        self._transact(4, FC_RESET_ENERGY, 4)
        return True

    def get_alarm_threshold(self):
        """The power alarm threshold in W."""
        return self._read_registers(FC_READ_HOLDING, REG_ALARM_THRESHOLD, 1)[0]

    def set_alarm_threshold(self, watts):
        if watts < 0 or watts > 0xFFFF:
            raise ValueError("alarm threshold must be 0..65535 W")
        self._write_register(REG_ALARM_THRESHOLD, watts)

    def get_address(self):
        """The meter's Modbus address (ask through 0xF8 when it is unknown)."""
        return self._read_registers(FC_READ_HOLDING, REG_ADDRESS, 1)[0]

    def set_address(self, new_address):
        """Change the meter's Modbus address (1..247); this driver then talks to the new address."""
        if new_address < 1 or new_address > 0xF7:
            raise ValueError("PZEM address must be 1..247")
        self._write_register(REG_ADDRESS, new_address)
        self.address = new_address

    # -- frames ---------------------------------------------------------------------------------------------

    def _read_registers(self, function, start, count):
        tx = self._tx
        tx[0] = self.address
        tx[1] = function
        tx[2] = start >> 8
        tx[3] = start & 0xFF
        tx[4] = count >> 8
        tx[5] = count & 0xFF
        n = self._transact(8, function, 5 + 2 * count)
        rx = self._rx
        if rx[2] != 2 * count or n != 5 + 2 * count:
            raise PZEMProtocolError(self.address, "byte count %d in a reply to %d registers" % (rx[2], count))
        regs = self._regs
        for i in range(count):
            regs[i] = (rx[3 + 2 * i] << 8) | rx[4 + 2 * i]
        return regs

    def _write_register(self, register, value):
        tx = self._tx
        tx[0] = self.address
        tx[1] = FC_WRITE_SINGLE
        tx[2] = register >> 8
        tx[3] = register & 0xFF
        tx[4] = value >> 8
        tx[5] = value & 0xFF
        self._transact(8, FC_WRITE_SINGLE, 8)
        rx = self._rx
        for i in range(2, 6):
            if rx[i] != tx[i]:
                raise PZEMProtocolError(self.address, "write of register %d not echoed" % register)

    def _transact(self, tx_len, function, expected):
        """Send ``tx[:tx_len - 2]`` with its CRC and receive the reply into ``rx``; returns its length."""
        tx = self._tx
        crc = crc16_modbus(tx, 0, tx_len - 2)
        tx[tx_len - 2] = crc & 0xFF
        tx[tx_len - 1] = crc >> 8
        out = memoryview(tx)[:tx_len]
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._exchange(out, function, expected)
            except (PZEMTimeout, PZEMShortFrame, PZEMCRCError):
                if attempt > self.retries:
                    raise

    def _exchange(self, out, function, expected):
        uart = self._uart
        # Drop anything stale (a late reply to an earlier request, line noise)
        while uart.any():
            if not uart.read(uart.any()):
                break
        uart.write(out)
        n = self._receive(expected)
        rx = self._rx
        if n == 0:
            raise PZEMTimeout(self.address, "no reply to function 0x%02x within %d ms" % (function, self.timeout_ms))
        frame_len = 5 if (n >= 2 and rx[1] & 0x80) else expected
        if n < frame_len:
            raise PZEMShortFrame(
                self.address, "reply of %d bytes to function 0x%02x, want %d" % (n, function, frame_len)
            )
        if crc16_modbus(rx, 0, frame_len) != 0:
            raise PZEMCRCError(self.address, "bad CRC in a %d-byte reply to function 0x%02x" % (n, function))
        if self.address != GENERAL_ADDRESS and rx[0] != self.address:
            raise PZEMAddressError(self.address, "reply from address 0x%02x" % rx[0])
        if rx[1] == (function | 0x80):
            raise PZEMExceptionResponse(self.address, function, rx[2])
        if rx[1] != function:
            raise PZEMProtocolError(self.address, "reply with function 0x%02x to 0x%02x" % (rx[1], function))
        return n

    def _receive(self, expected):
        """Read until ``expected`` bytes, a complete exception frame, or ``timeout_ms`` of silence."""
        uart = self._uart
        rx = self._rx
        n = 0
        last = self._ticks_ms()
        while n < expected:
            if n >= 5 and rx[1] & 0x80:
                break  # an exception response is 5 bytes
            waiting = uart.any()
            if waiting:
                chunk = uart.read(min(waiting, _MAX_FRAME - n))
                if chunk:
                    for b in chunk:
                        rx[n] = b
                        n += 1
                    last = self._ticks_ms()
                    continue
            if self._ticks_diff(self._ticks_ms(), last) >= self.timeout_ms:
                break
            self._sleep_ms(1)
        return n
