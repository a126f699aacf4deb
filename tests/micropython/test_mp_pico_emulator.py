"""The firmware on an emulated Raspberry Pi Pico: MicroPython 1.27.0 (RPI_PICO) on rp2040js, Cortex-M0+ at 125 MHz.

The `make firmware` .mpy set is staged into a littlefs image preloaded at the board's filesystem offset
(tests/micropython/pico_emulator.py; the image, boot ROM and mklfs.py stay in ../shared/emulators/rp2040).
One boot for this module runs, in one interpreter: one reading cycle within a heap budget, two signatures,
and the drivers' recorded SCD4x/PZEM bus traffic replaying (tests/sensors/driver_recordings.py). Checked:
the signatures and the outbox bytes are CPython's, OpenSSL accepts the signatures.

RAM-backed filesystem: the emulator does not model flash erase/program, so the board cannot write its own
littlefs. The cycle's files (outbox, sequence store, device key) are written through the unchanged device
code (flashfs.FlashDir) to a littlefs2 filesystem on a RAM block device mounted at /data
(tests/micropython/ram_flash.py); only that block device differs from a board.

Emulated signing costs seconds of host time per signature; this module boots once and signs three times.
If node, rp2040js or the emulator kit is missing the tests fail, saying which.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carbontrace_protocol import p256
from tests.micropython import pico_emulator
from tests.micropython.device_signing import check_signing_output, signing_program
from tests.micropython.mpy_set import RuntimeMissing, build_mpy_set
from tests.micropython.ram_flash import RAM_FLASH, RAM_FLASH_ROOT
from tests.micropython.reading_cycle import RecordedCycle, check_cycle, cycle_program, cycle_result, record_cycle
from tests.micropython.thumb_signer import check_thumb_output, thumb_program, thumb_scalars
from tests.sensors.driver_recordings import Recording, record_pzem, record_scd4x

pytestmark = pytest.mark.timeout(600)

# Free heap one reading cycle may use on the emulated Pico (measure -> encode -> sign -> outbox append on the
# RAM filesystem), as one free area, every other hole of its 246 KB heap filled with ballast
# (tests/micropython/heap_probe.py). Measured 2026-12-04 by bisecting this budget on this module's cycle (first
# on a fresh heap, to 112 B): fails at 2816 B, completes at 2928 B (13.2 KB before the CBOR encoder wrote
# into one buffer; docs/benchmarks.md, "The reading cycle's heap"); ~20 % added. Issue 15's target is 8 KB.
PICO_CYCLE_HEAP_BUDGET = 3584
SIGNED_MESSAGES = (b"carbontrace",)


class PicoSession:
    def __init__(self, run: pico_emulator.PicoRun, recorded: RecordedCycle, recordings: dict[str, Recording]) -> None:
        self.run = run
        self.recorded = recorded
        self.recordings = recordings

    def output_of(self, script: str) -> str:
        step = pico_emulator.step_named(self.run, script)
        if not step.ok:
            raise AssertionError(f"{script} raised on the emulated Pico:\n{self.run.stderr[-4000:]}")
        return step.output


@pytest.fixture(scope="module")
def pico(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PicoSession]:
    tmp = tmp_path_factory.mktemp("pico")
    try:
        pico_emulator.emulator_files()
        image = pico_emulator.stage_fs_image(build_mpy_set(tmp / "firmware"), tmp)
    except RuntimeMissing as err:
        pytest.fail(str(err))
    recorded = record_cycle()
    recordings = {"scd4x": record_scd4x(), "pzem": record_pzem()}
    programs = [
        # the cycle first, on the freshest heap; the RAM filesystem is mounted by its prelude
        ("cycle.py", cycle_program(recorded, RAM_FLASH_ROOT, PICO_CYCLE_HEAP_BUDGET, prelude=RAM_FLASH)),
        ("signing.py", signing_program(SIGNED_MESSAGES)),
        ("thumb.py", thumb_program(thumb_scalars())),
        *((f"replay_{name}.py", recording.script) for name, recording in recordings.items()),
        ("board.py", "import sys\nprint(sys.platform, sys.implementation._machine)\n"),
    ]
    yield PicoSession(pico_emulator.run_pico(image, programs), recorded, recordings)


def test_one_reading_cycle_fits_the_heap_budget_on_the_emulated_pico(pico: PicoSession) -> None:
    check_cycle(cycle_result(pico.output_of("cycle.py")), pico.recorded, PICO_CYCLE_HEAP_BUDGET)


def test_signatures_on_the_emulated_pico_match_cpython_and_verify_with_openssl(pico: PicoSession) -> None:
    check_signing_output(pico.output_of("signing.py"), SIGNED_MESSAGES)


def test_the_assembly_signer_runs_there_and_agrees_with_openssl(pico: PicoSession) -> None:
    check_thumb_output(pico.output_of("thumb.py"), thumb_scalars())
    assert p256._thumb is None  # and CPython signs without it (the signatures above are compared with these)


@pytest.mark.parametrize("name", ["scd4x", "pzem"])
def test_driver_recordings_replay_on_the_emulated_pico(pico: PicoSession, name: str) -> None:
    pico.recordings[name].check(pico.output_of(f"replay_{name}.py"))


def test_the_programs_ran_on_the_rp2040_port(pico: PicoSession) -> None:
    # the image really is MicroPython's RPI_PICO build on the emulated chip, not some other MicroPython
    assert pico.output_of("board.py").strip() == "rp2 Raspberry Pi Pico with RP2040"
