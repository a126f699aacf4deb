"""Firmware on the runtimes closer to a board: the MicroPython unix port and an emulated Raspberry Pi Pico.

Both run the `make firmware` .mpy set with a real, fixed-size GC heap (the WebAssembly port never collects
while Python runs). Measured there, by one device program (``BENCH_PROGRAM`` below):

- sign time: ``p256.sign`` of a reading-sized Sig_structure. On the emulated Pico in emulated CPU cycles
  (rp2040js ``core.cycles`` around a script of ``rounds`` signatures, tools/mp_rp2040.mjs) and in ms at
  125 MHz; on the unix port in ms of ``time.ticks_us``.
- bytes allocated per sign, with the GC off (``gc.mem_alloc`` delta). When one sign needs more than the
  whole free heap the figure is that free heap, a lower bound, and the row says so.
- heap headroom for one sign and for one reading cycle: the smallest free heap, as one free area, with which
  the work still completes (every other hole filled with ballast: tests/micropython/heap_probe.py, the probe
  the tests share); the cycle is the
  device application's ``measure_if_due`` (drivers replaying recorded SCD4x/PZEM traffic, encode, sign,
  outbox append; tests/micropython/reading_cycle.py), on a RAM-backed littlefs on the emulated Pico, which
  cannot program flash (tests/micropython/ram_flash.py), and on a host directory on the unix port.

The programs and runners live beside the tests that use them (tests/micropython/), so this runs from a
checkout (`make bench`); without one, or without a runtime, the rows say "not available" and why.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

BENCH_KEY_TEXT = b"carbontrace/test-device-key/1"
HEADROOM_HIGH = 64 * 1024  # the search's upper bound (a 64-bit unix-port cycle needs ~33 KB); above it: not found
# bisection to 1 KiB: 6 probes per figure. Each probe is a sign on a nearly full heap (dozens of collections
# on the emulated Pico, tens of seconds of host time on a busy machine)
HEADROOM_STEP = 1024
# the unix port's heap for the bench: roomy, so that allocation with the GC off is a figure, not a bound
UNIX_BENCH_HEAPSIZE = 4 * 1024 * 1024
PICO_SIGN_ROUNDS = 2  # ~1 s emulated, 3-20 s of host time each


def _setup_program(flash_root: str, prelude: str) -> str:
    from tests.micropython.heap_probe import HEAP_PROBE
    from tests.micropython.reading_cycle import CYCLE_RIG, record_cycle
    from tests.sensors.driver_recordings import MICROPYTHON_REPLAY_I2C, MICROPYTHON_REPLAY_UART

    recorded = record_cycle()
    return (
        prelude + HEAP_PROBE + MICROPYTHON_REPLAY_I2C + MICROPYTHON_REPLAY_UART + CYCLE_RIG
        + f"""
import gc
import hashlib
import json
import time
from carbontrace_protocol import cose, p256

KEY = p256.private_key_from_bytes(hashlib.sha256({BENCH_KEY_TEXT!r}).digest())
MESSAGE = cose.sig_structure(cose.protected_header(b"pico-lab-01"), bytes(120))
I2C_TRANSCRIPT = {recorded.i2c!r}
UART_TRANSCRIPT = {recorded.uart!r}
now = [0]


def sleep_ms(ms):
    now[0] += ms


i2c = ReplayI2C(I2C_TRANSCRIPT)
uart = ReplayUART(UART_TRANSCRIPT)
app = make_app({flash_root!r}, i2c, uart, lambda: now[0], sleep_ms)


def one_sign():
    return p256.sign(KEY, MESSAGE)


def one_cycle():
    now[0] += app.settings["measure_interval_ms"]  # the next cycle is due
    i2c.i = 0  # the same recorded traffic every cycle
    uart.i = 0
    if app.measure_if_due() is None:
        raise AssertionError("no reading was stored")


one_cycle()
gc.collect()
bench = {{"heap_total": gc.mem_free() + gc.mem_alloc(), "heap_used_after_setup": gc.mem_alloc()}}
"""
    )


def _sign_loop(rounds: int) -> str:
    return f"""
gc.collect()
_t0 = time.ticks_us()
for _ in range({rounds}):
    one_sign()
bench["ms_per_sign"] = time.ticks_diff(time.ticks_us(), _t0) / {rounds} / 1000
"""


MEASURE_PROGRAM = f"""
bench["alloc_bytes_per_sign"] = alloc_of(one_sign)
bench["alloc_bytes_per_cycle"] = alloc_of(one_cycle)
_t0 = time.ticks_us()
one_cycle()
bench["ms_per_cycle"] = time.ticks_diff(time.ticks_us(), _t0) / 1000

bench["headroom_bytes_sign"] = headroom_needed(one_sign, {HEADROOM_HIGH}, {HEADROOM_STEP})
bench["headroom_bytes_cycle"] = headroom_needed(one_cycle, {HEADROOM_HIGH}, {HEADROOM_STEP})
bench["headroom_bytes_alloc512"] = headroom_needed(lambda: bytearray(512), {HEADROOM_HIGH}, {HEADROOM_STEP})
print(json.dumps(bench))
"""


def _result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise ValueError(f"the bench program printed no result: {stdout[-300:]}")


def unix_port(rounds: int) -> dict[str, Any] | str:
    """Figures on the MicroPython unix port, or why there are none."""
    try:
        from simulators import firmware_path

        firmware_path.ensure()
        from tests.micropython.mp_unix import run_unix
        from tests.micropython.mpy_set import RuntimeMissing, build_mpy_set
    except ImportError as err:
        return f"needs a checkout with tests/ ({err})"
    try:
        with tempfile.TemporaryDirectory(prefix="ct-bench-unix-") as tmp:
            lib = build_mpy_set(Path(tmp) / "fw")
            (Path(tmp) / "flash").mkdir()
            program = _setup_program(str(Path(tmp) / "flash"), "") + _sign_loop(rounds) + MEASURE_PROGRAM
            done = run_unix(program, lib, UNIX_BENCH_HEAPSIZE, Path(tmp), timeout=600)
    except RuntimeMissing as err:
        return str(err)
    if done.returncode != 0:
        return f"unix port run failed: {done.stderr.strip()[-300:]}"
    figures = _result(done.stdout)
    figures["heapsize"] = UNIX_BENCH_HEAPSIZE
    return figures


def emulated_pico(rounds: int = PICO_SIGN_ROUNDS) -> dict[str, Any] | str:
    """Figures on the emulated Pico (one boot), or why there are none."""
    try:
        from simulators import firmware_path

        firmware_path.ensure()
        from tests.micropython import pico_emulator
        from tests.micropython.mpy_set import RuntimeMissing, build_mpy_set
        from tests.micropython.ram_flash import RAM_FLASH, RAM_FLASH_ROOT
    except ImportError as err:
        return f"needs a checkout with tests/ ({err})"
    try:
        with tempfile.TemporaryDirectory(prefix="ct-bench-pico-") as tmp:
            image = pico_emulator.stage_fs_image(build_mpy_set(Path(tmp) / "fw"), Path(tmp))
            programs = [("setup.py", _setup_program(RAM_FLASH_ROOT, RAM_FLASH)),
                        ("signs.py", _sign_loop(rounds)), ("measure.py", MEASURE_PROGRAM)]
            run = pico_emulator.run_pico(image, programs, timeout=1200)
    except RuntimeMissing as err:
        return str(err)
    if run.returncode != 0:
        return f"emulated Pico run failed: {run.stderr.strip()[-300:]}"
    figures = _result(run.stdout)
    signs = next(step for step in run.steps if step.script == "signs.py")
    # the script's own overhead (a collect, the loop) is a few thousand cycles against ~1e8 per sign
    figures["cycles_per_sign"] = signs.cycles / rounds
    figures["emulated_ms_per_sign"] = signs.emulated_ms / rounds
    figures["clock_hz"] = pico_emulator.CLOCK_HZ
    figures["host_s"] = sum(step.host_s for step in run.steps)
    return figures
