"""Heap headroom of the device's reading cycle and of each of its steps on the emulated Pico.

    .venv/bin/python tools/pico_heap_headroom.py           # one free area: ~10 min of wall time, 2-core machine
    .venv/bin/python tools/pico_heap_headroom.py --holes   # and the holes-only figures (about twice as long)

Runs the bench's device set-up (carbontrace/benchmarks/firmware_runtimes.py: the `make firmware` set, the
application on a RAM-backed littlefs, drivers replaying recorded traffic) on the emulated Pico, then bisects to
256 bytes the free heap that one reading cycle (measure -> encode -> sign -> outbox append), each step of it
and one lone ``bytearray(512)`` need, with the probe the tests share (tests/micropython/heap_probe.py):

- ``one_area``: the work gets that much free heap as one area, every other hole filled (the budgets' measure);
- ``holes`` (with ``--holes``): the ballast goes first, the work gets what it leaves (the loaded heap's holes).

The steps, each alone on the same heap after the cycle has run once: ``measure`` (the SCD4x and PZEM drivers
replaying one cycle's bus traffic), ``seq`` (the sequence store's next number, a flash file replaced, as the
cycle's ``seq_block`` 1 does every reading), ``encode`` (the reading's SenML-CBOR payload), ``sign_reading``
(encode + COSE_Sign1, the device key's ``sign_reading``), ``sign`` (``p256.sign`` alone), ``outbox`` (one
signed reading appended to the outbox on littlefs). Prints one JSON line. A measuring tool for
docs/benchmarks.md (issue 15), not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

HIGH = 32768  # the search's upper bound (or the heap's largest free area, if smaller); above it: null
STEP = 256

STEPS = """
from carbontrace_protocol.reading import Reading


def step_measure():
    i2c.i = 0  # the same recorded traffic every time
    uart.i = 0
    app.co2_sensor.data_ready()
    app.co2_sensor.read_measurement()
    app.meter.read()


def step_seq():
    app.seqstore.next()


READING = Reading(app.device_id, 7, 1767225600, app.firmware, boot=app.boot, up=60, co2_ppm=612,
                  temperature_centi_c=2345, humidity_centi_pct=4120, energy_wh=1200, power_deci_w=12000)
RECORD = app.key.sign_reading(READING)


def step_encode():
    READING.encode()


def step_sign_reading():
    app.key.sign_reading(READING)


def step_outbox():
    app.outbox.append(RECORD)


WORK = (("cycle", one_cycle), ("measure", step_measure), ("seq", step_seq), ("encode", step_encode),
        ("sign_reading", step_sign_reading), ("sign", one_sign), ("outbox", step_outbox),
        ("bytearray_512", lambda: bytearray(512)))
"""


def probes_program(holes: bool) -> str:
    ways = "((\"one_area\", True), (\"holes\", False))" if holes else "((\"one_area\", True),)"
    return STEPS + f"""

out = {{}}
for way, one_area in {ways}:
    out[way] = {{name: headroom_needed(fn, {HIGH}, {STEP}, one_area) for name, fn in WORK}}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holes", action="store_true", help="also the holes-only figures")
    args = parser.parse_args()
    from carbontrace.benchmarks import firmware_runtimes
    from simulators import firmware_path

    firmware_path.ensure()
    from tests.micropython import pico_emulator
    from tests.micropython.mpy_set import build_mpy_set
    from tests.micropython.ram_flash import RAM_FLASH, RAM_FLASH_ROOT

    with tempfile.TemporaryDirectory(prefix="ct-heap-") as tmp:
        image = pico_emulator.stage_fs_image(build_mpy_set(Path(tmp) / "fw"), Path(tmp))
        setup = firmware_runtimes._setup_program(RAM_FLASH_ROOT, RAM_FLASH)
        run = pico_emulator.run_pico(image, [("setup.py", setup), ("probes.py", probes_program(args.holes))],
                                     timeout=3600)
    if run.returncode != 0:
        raise SystemExit(f"emulated Pico run failed: {run.stderr.strip()[-500:]}")
    result = next(line for line in reversed(run.stdout.splitlines()) if line.startswith("{"))
    sys.stdout.write(json.dumps(json.loads(result)) + "\n")


if __name__ == "__main__":
    main()
