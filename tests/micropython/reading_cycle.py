"""One full reading cycle of the device application on a device runtime, against the same cycle in CPython.

The cycle is ``DeviceApp.measure_if_due()``: read the SCD4x over I2C and the PZEM-004T over Modbus, build the
reading (next sequence number, reserved on flash), SenML-CBOR encode it, sign it (COSE_Sign1, ES256) and
append it to the flash outbox. It stops at the outbox record: publishing is the MQTT link's job, tested on a
real broker in tests/firmware/.

``record_cycle()`` runs the cycle in CPython with the drivers on the bus emulators (simulators/), recording the
bus traffic, and keeps what the device must reproduce: the outbox record and the whole outbox file, byte for
byte. ``cycle_program()`` is the MicroPython program that runs the same cycle (``CYCLE_RIG``, the same source
in both interpreters) with the drivers replaying that recording (the replay buses of
tests/sensors/driver_recordings.py), with a heap budget of free heap as one area, every other hole filled with
ballast (heap_probe.py).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbontrace_device.scd4x import SCD4X

from carbontrace_protocol import cose, p256
from carbontrace_protocol.reading import Reading, decode_payload, sign_reading
from simulators.clock import ManualClock
from simulators.pzem_emulator import ConstantLoad, PZEMEmulator, UARTAdapter
from simulators.scd4x_emulator import Ambient, SCD4xEmulator
from tests.micropython.device_signing import openssl_verifies
from tests.micropython.heap_probe import HEAP_PROBE
from tests.sensors.driver_recordings import MICROPYTHON_REPLAY_I2C, MICROPYTHON_REPLAY_UART

CYCLE_DEVICE_ID = "pico-lab-01"
CYCLE_WALL_TIME = 1767225600  # the port's synced clock: the reading carries no FLAG_TIME_NOT_SYNCED
# the key seed the port's "hardware RNG" returns on first boot (DeviceKey makes the key from it)
CYCLE_KEY_SEED = bytes(range(7, 47))

# Device code only from the firmware package; the port and the MQTT link are the two pieces a test provides
# (the board's port needs machine/network, and the cycle ends before the link is used). Runs in CPython and
# in MicroPython unchanged.
CYCLE_RIG = f'''
from carbontrace_device import config
from carbontrace_device.app import DeviceApp
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.pzem004t import PZEM004T
from carbontrace_device.scd4x import SCD4X


class CyclePort:
    """The port interface with no hardware: ticks from the caller, a synced wall clock, a fixed RNG."""

    def __init__(self, flash_root, ticks_ms):
        self.flash = FlashDir(flash_root)
        self._ticks_ms = ticks_ms

    def ticks_ms(self):
        return self._ticks_ms()

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, delta):
        return a + delta

    def sleep_ms(self, ms):
        pass

    def wall_time(self):
        return {CYCLE_WALL_TIME}

    def ntp_sync(self, host=None):
        return True

    def random_bytes(self, n):
        return {CYCLE_KEY_SEED!r}[:n]

    def feed_watchdog(self):
        pass

    def free_heap(self):
        return -1

    def collect_garbage(self):
        pass

    def machine_id(self):
        return "00"


class _Client:
    def set_puback_callback(self, callback):
        self.on_puback = callback


class NoLink:
    """The MQTT link, never connected: the cycle ends at the outbox record."""

    def __init__(self):
        self.client = _Client()


def make_app(flash_root, i2c, uart, ticks_ms, sleep_ms):
    port = CyclePort(flash_root, ticks_ms)
    # seq_block 1: every reading reserves its sequence number on flash (a file replaced), the costliest cycle
    settings = config.load(None, {{"device_id": {CYCLE_DEVICE_ID!r}, "outbox_budget_bytes": 16 + 4 * 416,
                                   "seq_block": 1}})
    co2 = SCD4X(i2c, sleep_ms=sleep_ms)
    meter = PZEM004T(uart, ticks_ms=ticks_ms, sleep_ms=sleep_ms, timeout_ms=100)
    return DeviceApp(port, settings, co2_sensor=co2, meter=meter, mqtt=NoLink())


def cycle_record(app):
    """The outbox record of the newest reading."""
    return app.outbox.read(app.outbox.pending()[-1])
'''


@dataclass(frozen=True)
class RecordedCycle:
    i2c: list[tuple[str, bytes, int | None]]  # (direction, bytes, errno or None) per I2C transfer
    uart: list[tuple[bytes, bytes | None]]  # (request frame, reply) per Modbus exchange
    record: bytes  # the outbox record: the signed reading
    outbox_file: bytes  # outbox.dat after the cycle


def record_cycle() -> RecordedCycle:
    """The cycle in CPython on the bus emulators: its bus traffic, its outbox record and file."""
    clock = ManualClock()
    scd = SCD4xEmulator(clock=clock, seed=3)
    scd.ambient_override = Ambient(612.0, 23.45, 41.2)
    SCD4X(scd, sleep_ms=clock.sleep_ms).start_periodic_measurement()  # main.py starts it at boot
    pzem = PZEMEmulator(clock=clock, load=ConstantLoad(1200.0, voltage_v=229.0, power_factor=0.95))
    clock.advance(3600)  # an hour of load on the meter; the SCD4x has a sample ready
    i2c_start, uart_start = len(scd.transfers), len(pzem.requests)
    namespace: dict[str, Any] = {}
    exec(CYCLE_RIG, namespace)
    with tempfile.TemporaryDirectory(prefix="ct-cycle-") as tmp:
        app = namespace["make_app"](tmp, scd, UARTAdapter(pzem), clock.ticks_ms, clock.sleep_ms)
        assert app.measure_if_due() == 0
        record = namespace["cycle_record"](app)
        app.outbox.close()
        outbox_file = (Path(tmp) / "outbox.dat").read_bytes()
    i2c: list[tuple[str, bytes, int | None]] = [(t.direction, t.data, t.errno) for t in scd.transfers[i2c_start:]]
    uart = [(r.frame, r.reply) for r in pzem.requests[uart_start:]]
    assert i2c and uart
    return RecordedCycle(i2c, uart, record, outbox_file)


def cycle_program(recorded: RecordedCycle, flash_root: str, heap_budget: int, prelude: str = "") -> str:
    """The cycle on a device within ``heap_budget`` bytes of free heap; prints one JSON line.

    ``prelude`` runs first (the emulated Pico's RAM filesystem). The printed line: ok (the cycle completed
    within the budget), left (free heap it started with), i2c_used / uart_used (transfers replayed), record
    and outbox_file (hex), or record null when the budget was too small (MemoryError).
    """
    return (
        prelude
        + HEAP_PROBE
        + MICROPYTHON_REPLAY_I2C
        + MICROPYTHON_REPLAY_UART
        + CYCLE_RIG
        + f"""
import binascii
import json

I2C_TRANSCRIPT = {recorded.i2c!r}
UART_TRANSCRIPT = {recorded.uart!r}
FLASH_ROOT = {flash_root!r}
now = [0]


def sleep_ms(ms):
    now[0] += ms


i2c = ReplayI2C(I2C_TRANSCRIPT)
uart = ReplayUART(UART_TRANSCRIPT)
app = make_app(FLASH_ROOT, i2c, uart, lambda: now[0], sleep_ms)
ok, left = completes_within(app.measure_if_due, {heap_budget})
result = {{"ok": ok, "left": left, "i2c_used": i2c.i, "uart_used": uart.i, "record": None}}
if ok:
    result["record"] = binascii.hexlify(cycle_record(app)).decode()
    app.outbox.close()
    with open(FLASH_ROOT + "/outbox.dat", "rb") as f:
        result["outbox_file"] = binascii.hexlify(f.read()).decode()
print(json.dumps(result))
"""
    )


def cycle_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise AssertionError(f"the cycle program printed no result:\n{stdout[-2000:]}")


def check_cycle(
    result: dict[str, Any], recorded: RecordedCycle, heap_budget: int, hole_slack: int = 512
) -> None:
    """The device completed the cycle within the budget and wrote CPython's bytes; OpenSSL accepts them.

    ``hole_slack``: the free bytes the fill may leave besides the budget's one area: the reserve's header block
    and holes smaller than one link of the ballast chain (a tuple and a bytearray: 32 bytes on a 32-bit board,
    over 64 on a 64-bit port, whose holes left after set-up therefore sum to more)."""
    assert result["ok"], f"one reading cycle did not complete within {heap_budget} bytes of free heap: {result}"
    # the fill's last tries (a chunk that fitted when its link did not) become garbage, collected before the work
    # starts: they are holes too
    assert result["left"] <= heap_budget + hole_slack, result
    assert (result["i2c_used"], result["uart_used"]) == (len(recorded.i2c), len(recorded.uart))
    record = bytes.fromhex(result["record"])
    assert record == recorded.record, "the device's outbox record differs from CPython's"
    assert bytes.fromhex(result["outbox_file"]) == recorded.outbox_file, "outbox.dat differs from CPython's"
    key = p256.private_key_from_bytes(CYCLE_KEY_SEED)
    parsed = cose.parse_sign1(record)
    reading = decode_payload(parsed.payload)
    assert reading.device_id == CYCLE_DEVICE_ID and reading.seq == 0 and reading.timestamp == CYCLE_WALL_TIME
    assert reading.co2_ppm is not None and reading.energy_wh is not None and reading.flags == 0, reading
    assert record == sign_reading(Reading(**reading.as_dict()), key)  # type: ignore[arg-type]
    openssl_verifies(p256.public_key(key), parsed.signed_bytes(), parsed.signature)
