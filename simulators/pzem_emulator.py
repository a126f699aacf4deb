"""A Peacefair PZEM-004T v3.0 energy meter: a Modbus RTU slave over a byte stream.

* Input registers 0..9 (function 0x04) with the manual's scaling: voltage 0.1 V, current 0.001 A (32 bits, low
  word first), power 0.1 W (32 bits), energy 1 Wh (32 bits), frequency 0.1 Hz, power factor 0.01, alarm
  (0xFFFF when the power exceeds the threshold). Holding registers (0x03 read / 0x06 write): 1 = power alarm
  threshold in W, 2 = Modbus address (1..247). 0x42 resets the energy; 0x41 (calibration) is accepted from the
  general address 0xF8 with the factory password 0x3721.
* Exception responses (function | 0x80): 0x01 unknown function, 0x02 register out of range, 0x03 bad value or
  a frame of the wrong length for its function.
* Silence, as the real meter: on garbage, a bad CRC, or a frame for another slave. The meter answers its own
  address and the general address 0xF8 (with the address byte of the request).
* Energy integrates the load profile's power over emulated time (``(clock() - start) * time_scale``), in
  steps of at most one second; the 32-bit register wraps at ``energy_wrap_wh``.
* Faults (``emulator.faults``): silence, truncated replies, bad CRC, a reply from another address, garbage
  before the reply, a forced exception code.

Transports: ``handle_frame(bytes) -> bytes | None`` for one request; ``UARTAdapter`` for the firmware driver
(``machine.UART``'s ``write``/``read``/``any``, bytes arriving at the baud rate on the emulator's clock); and
``PtyServer`` serving the meter on a pseudo-terminal (``os.openpty``) that a real Modbus client opens as a
serial port.
"""

from __future__ import annotations

import math
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

GENERAL_ADDRESS = 0xF8
CALIBRATION_PASSWORD = 0x3721
INPUT_REGISTERS = 10
ENERGY_WRAP_32 = 1 << 32

FC_READ_HOLDING = 0x03
FC_READ_INPUT = 0x04
FC_WRITE_SINGLE = 0x06
FC_CALIBRATE = 0x41
FC_RESET_ENERGY = 0x42
_FRAME_LENGTHS = {FC_READ_HOLDING: 8, FC_READ_INPUT: 8, FC_WRITE_SINGLE: 8, FC_CALIBRATE: 6, FC_RESET_ENERGY: 4}

EXC_ILLEGAL_FUNCTION = 0x01
EXC_ILLEGAL_ADDRESS = 0x02
EXC_ILLEGAL_DATA = 0x03
EXC_SLAVE_ERROR = 0x04


def crc16_modbus(data: bytes | bytearray) -> int:
    """CRC-16/MODBUS register value (the low byte goes first on the wire)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes | bytearray) -> bytes:
    crc = crc16_modbus(frame)
    return bytes(frame) + bytes((crc & 0xFF, crc >> 8))


@dataclass(frozen=True)
class LoadPoint:
    voltage_v: float
    current_a: float
    power_factor: float
    frequency_hz: float

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a * self.power_factor


class LoadProfile(Protocol):
    def __call__(self, t: float) -> LoadPoint:
        """The electrical state at emulated time ``t`` (seconds since the emulator started)."""
        ...


class ConstantLoad:
    """A steady load drawing ``power_w`` at ``voltage_v`` with ``power_factor``."""

    def __init__(
        self, power_w: float, voltage_v: float = 230.0, power_factor: float = 1.0, frequency_hz: float = 50.0
    ) -> None:
        if power_w < 0 or voltage_v <= 0 or not 0 < power_factor <= 1:
            raise ValueError("need power_w >= 0, voltage_v > 0, 0 < power_factor <= 1")
        self.power_w = power_w
        self.voltage_v = voltage_v
        self.power_factor = power_factor
        self.frequency_hz = frequency_hz

    def __call__(self, t: float) -> LoadPoint:
        current = self.power_w / (self.voltage_v * self.power_factor)
        return LoadPoint(self.voltage_v, current, self.power_factor, self.frequency_hz)


class DailyLoad:
    """A building's load: ``base_w`` at night rising to ``peak_w`` in working hours, mains voltage and
    frequency wandering a little, with seeded noise (deterministic for a given ``seed`` and time)."""

    def __init__(
        self,
        base_w: float = 300.0,
        peak_w: float = 2500.0,
        start_hour: float = 9.0,
        seed: int = 0,
        power_factor: float = 0.93,
    ) -> None:
        self.base_w = base_w
        self.peak_w = peak_w
        self.start_hour = start_hour
        self.seed = seed
        self.power_factor = power_factor
        self._noise_bucket = -1
        self._noise = (0.0, 0.0, 0.0)

    def _noise_at(self, t: float) -> tuple[float, float, float]:
        bucket = int(t // 10)  # the noise changes every 10 s, the same for the same seed and time
        if bucket != self._noise_bucket:
            rng = random.Random(self.seed * 1_000_003 + bucket)
            self._noise = (rng.gauss(0.0, 0.02 * self.base_w), rng.gauss(0.0, 0.5), rng.gauss(0.0, 0.02))
            self._noise_bucket = bucket
        return self._noise

    def __call__(self, t: float) -> LoadPoint:
        h = (self.start_hour + t / 3600.0) % 24.0
        activity = math.sin(math.pi * (h - 7.0) / 12.0) if 7.0 < h < 19.0 else 0.0
        noise_p, noise_v, noise_f = self._noise_at(t)
        power = self.base_w + (self.peak_w - self.base_w) * activity + noise_p
        voltage = 230.0 + 4.0 * math.sin(2 * math.pi * h / 24.0) + noise_v
        frequency = 50.0 + noise_f
        power = max(0.0, power)
        current = power / (voltage * self.power_factor)
        return LoadPoint(voltage, current, self.power_factor, frequency)


@dataclass
class PZEMFaults:
    """Faults to inject; counters are consumed per request that would have been answered."""

    offline: bool = False  # never answers
    silent: int = 0  # ignore the next N requests (the master times out)
    truncate: int = 0  # cut the next N replies ...
    truncate_to: int = 7  # ... to this many bytes
    bad_crc: int = 0  # flip a bit in the next N replies' CRC
    wrong_address: int = 0  # answer the next N requests with another slave address
    garbage: int = 0  # prefix the next N replies with noise bytes
    exception: int | None = None  # answer every request with this exception code (e.g. 0x04 slave error)


@dataclass(frozen=True)
class Request:
    time: float
    frame: bytes
    reply: bytes | None


class PZEMEmulator:
    def __init__(
        self,
        *,
        address: int = 0x01,
        load: LoadProfile | None = None,
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
        energy_wh: int = 0,
        energy_wrap_wh: int = ENERGY_WRAP_32,
        alarm_threshold_w: int = 23000,
    ) -> None:
        if not 1 <= address <= 0xF7:
            raise ValueError("a PZEM address is 1..247")
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.address = address
        self.load: LoadProfile = load if load is not None else ConstantLoad(100.0)
        self._clock = clock
        self._t0 = clock()
        self.time_scale = time_scale
        self.energy_wrap_wh = energy_wrap_wh
        self._energy_ws = float(energy_wh) * 3600.0  # watt-seconds: exact sums for whole watts
        self._integrated_to = 0.0
        self.alarm_threshold_w = alarm_threshold_w
        self.faults = PZEMFaults()
        self.requests: list[Request] = []
        self.energy_resets = 0
        self._lock = threading.RLock()

    def now(self) -> float:
        return (self._clock() - self._t0) * self.time_scale

    # -- measurement ------------------------------------------------------------------------------------------

    def _integrate(self) -> None:
        now = self.now()
        t = self._integrated_to
        while t < now:
            step = min(1.0, now - t)
            mid = self.load(t + step / 2).power_w
            self._energy_ws += mid * step
            t += step
        self._integrated_to = max(t, now)
        wrap_ws = self.energy_wrap_wh * 3600.0
        if self._energy_ws >= wrap_ws:
            self._energy_ws %= wrap_ws

    @property
    def energy_wh(self) -> int:
        """The energy register now."""
        with self._lock:
            self._integrate()
            return int(self._energy_ws // 3600)

    def set_energy_wh(self, value: int) -> None:
        with self._lock:
            self._integrate()
            self._energy_ws = float(value) * 3600.0

    def input_registers(self) -> list[int]:
        """The 10 input registers as the meter would report them now."""
        with self._lock:
            self._integrate()
            point = self.load(self.now())
            voltage = _clamp(round(point.voltage_v * 10), 0xFFFF)
            current = _clamp(round(point.current_a * 1000), 0xFFFF_FFFF)
            power = _clamp(round(point.power_w * 10), 0xFFFF_FFFF)
            energy = int(self._energy_ws // 3600) & 0xFFFF_FFFF
            frequency = _clamp(round(point.frequency_hz * 10), 0xFFFF)
            pf = _clamp(round(point.power_factor * 100), 100)
            alarm = 0xFFFF if point.power_w > self.alarm_threshold_w else 0x0000
            return [
                voltage,
                current & 0xFFFF,
                current >> 16,
                power & 0xFFFF,
                power >> 16,
                energy & 0xFFFF,
                energy >> 16,
                frequency,
                pf,
                alarm,
            ]

    def holding_registers(self) -> dict[int, int]:
        return {1: self.alarm_threshold_w, 2: self.address}

    # -- Modbus RTU -------------------------------------------------------------------------------------------

    def handle_frame(self, frame: bytes) -> bytes | None:
        """Answer one request frame (address ... CRC); None is silence."""
        with self._lock:
            reply = self._answer(bytes(frame))
            self.requests.append(Request(self.now(), bytes(frame), reply))
            return reply

    def _answer(self, frame: bytes) -> bytes | None:
        if len(frame) < 4 or crc16_modbus(frame) != 0:
            return None  # garbage or a damaged frame: a slave stays silent
        slave = frame[0]
        if slave not in (self.address, GENERAL_ADDRESS):
            return None
        f = self.faults
        if f.offline:
            return None
        if f.silent > 0:
            f.silent -= 1
            return None
        function = frame[1]
        if f.exception is not None:
            reply = bytes((slave, function | 0x80, f.exception))
        else:
            reply = self._execute(slave, function, frame[2:-2])
        if f.wrong_address > 0:
            f.wrong_address -= 1
            reply = bytes(((slave % 0xF7) + 1,)) + reply[1:]
        out = with_crc(reply)
        if f.bad_crc > 0:
            f.bad_crc -= 1
            out = out[:-1] + bytes((out[-1] ^ 0x01,))
        if f.truncate > 0:
            f.truncate -= 1
            out = out[: f.truncate_to]
        if f.garbage > 0:
            f.garbage -= 1
            out = b"\x00\xff\x5a" + out
        return out

    def _execute(self, slave: int, function: int, body: bytes) -> bytes:
        def exception(code: int) -> bytes:
            return bytes((slave, function | 0x80, code))

        expected_len = _FRAME_LENGTHS.get(function)
        if expected_len is None:
            return exception(EXC_ILLEGAL_FUNCTION)
        if len(body) != expected_len - 4:
            return exception(EXC_ILLEGAL_DATA)
        if function in (FC_READ_INPUT, FC_READ_HOLDING):
            start = (body[0] << 8) | body[1]
            count = (body[2] << 8) | body[3]
            if not 1 <= count <= 0x7D:
                return exception(EXC_ILLEGAL_DATA)
            if function == FC_READ_INPUT:
                if start + count > INPUT_REGISTERS:
                    return exception(EXC_ILLEGAL_ADDRESS)
                values = self.input_registers()[start : start + count]
            else:
                holding = self.holding_registers()
                wanted = range(start, start + count)
                if any(r not in holding for r in wanted):
                    return exception(EXC_ILLEGAL_ADDRESS)
                values = [holding[r] for r in wanted]
            data = b"".join(v.to_bytes(2, "big") for v in values)
            return bytes((slave, function, len(data))) + data
        if function == FC_WRITE_SINGLE:
            register = (body[0] << 8) | body[1]
            value = (body[2] << 8) | body[3]
            if register == 1:
                self.alarm_threshold_w = value
            elif register == 2:
                if not 1 <= value <= 0xF7:
                    return exception(EXC_ILLEGAL_DATA)
                self.address = value  # takes effect for the next request; this reply still comes from slave
            else:
                return exception(EXC_ILLEGAL_ADDRESS)
            return bytes((slave, function)) + body
        if function == FC_RESET_ENERGY:
            self._integrate()
            self._energy_ws = 0.0
            self.energy_resets += 1
            return bytes((slave, function))
        # FC_CALIBRATE: factory calibration, general address and password only
        if slave != GENERAL_ADDRESS or ((body[0] << 8) | body[1]) != CALIBRATION_PASSWORD:
            return exception(EXC_ILLEGAL_DATA)
        return bytes((slave, function)) + body


def _clamp(value: int, top: int) -> int:
    return max(0, min(top, value))


def complete_frame_length(buf: bytes | bytearray) -> int:
    """The length of a complete, CRC-valid request at the start of ``buf``, or 0 if there is none yet."""
    if len(buf) < 2:
        return 0
    length = _FRAME_LENGTHS.get(buf[1], 0)
    if length and len(buf) >= length and crc16_modbus(buf[:length]) == 0:
        return length
    return 0


class UARTAdapter:
    """``machine.UART``-like access to the emulator for the firmware driver.

    Each ``write()`` is one request frame (the driver writes whole frames). The reply's bytes arrive one by
    one at ``baudrate`` (10 bits per byte) after ``reply_delay_ms``, on the emulator's clock; ``baudrate=None``
    makes them arrive at once. ``read(n)`` returns what has arrived (at most n bytes), or None.
    """

    def __init__(self, emulator: PZEMEmulator, *, baudrate: int | None = 9600, reply_delay_ms: float = 10.0) -> None:
        self.emulator = emulator
        self.baudrate = baudrate
        self.reply_delay_ms = reply_delay_ms
        self._pending: list[tuple[float, int]] = []  # (emulated arrival time, byte)
        self.written: list[bytes] = []

    def _arrived(self) -> int:
        now = self.emulator.now()
        return sum(1 for t, _ in self._pending if t <= now)

    def write(self, buf: bytes | bytearray | memoryview) -> int:
        frame = bytes(buf)
        self.written.append(frame)
        reply = self.emulator.handle_frame(frame)
        if reply:
            byte_s = 10.0 / self.baudrate if self.baudrate else 0.0
            start = self.emulator.now() + len(frame) * byte_s + self.reply_delay_ms / 1000
            self._pending = [(start + (i + 1) * byte_s, b) for i, b in enumerate(reply)]
        return len(frame)

    def any(self) -> int:
        return self._arrived()

    def read(self, nbytes: int = -1) -> bytes | None:
        ready = self._arrived()
        if nbytes >= 0:
            ready = min(ready, nbytes)
        if ready == 0:
            return None
        out = bytes(b for _, b in self._pending[:ready])
        del self._pending[:ready]
        return out

    def inject(self, data: bytes) -> None:
        """Bytes on the line now (noise, a stale reply) for the driver to cope with."""
        now = self.emulator.now()
        self._pending.extend((now, b) for b in data)


class PtyServer:
    """Serves the emulator on a pseudo-terminal. Open ``server.port`` (e.g. ``/dev/pts/5``) as a serial port.

    A request is taken as soon as the buffered bytes start with a complete, CRC-valid frame of a known
    function; otherwise the bytes received before ``frame_gap_s`` of silence form the frame (RTU framing by
    idle line), which is answered if valid (an unknown function gets exception 0x01) and dropped if not.
    """

    def __init__(self, emulator: PZEMEmulator, *, frame_gap_s: float = 0.02) -> None:
        self.emulator = emulator
        self.frame_gap_s = frame_gap_s
        self._master = -1
        self._slave = -1
        self.port = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped: list[bytes] = []

    def start(self) -> PtyServer:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass through unchanged
        self.port = os.ttyname(self._slave)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="pzem-pty", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> PtyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], self.frame_gap_s)
            if ready:
                try:
                    chunk = os.read(self._master, 256)
                except OSError:
                    time.sleep(self.frame_gap_s)  # the line hung up (EIO on Linux); wait for a client
                    continue
                buf += chunk
                while (length := complete_frame_length(buf)) > 0:
                    frame = bytes(buf[:length])
                    del buf[:length]
                    reply = self.emulator.handle_frame(frame)
                    if reply:
                        os.write(self._master, reply)
            elif buf:
                # the line went idle: the bytes so far are one frame (RTU framing by silence), e.g. an
                # unknown function code, which earns an exception reply, or garbage, which earns silence
                reply = self.emulator.handle_frame(bytes(buf))
                if reply:
                    os.write(self._master, reply)
                else:
                    self.dropped.append(bytes(buf))
                buf.clear()
