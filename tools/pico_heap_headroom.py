"""Heap headroom of the device's reading cycle on the emulated Pico, measured two ways.

    .venv/bin/python tools/pico_heap_headroom.py     # ~13 min of wall time on the 2-core machine

Runs the bench's device set-up (carbontrace/benchmarks/firmware_runtimes.py: the `make firmware` set, the
application on a RAM-backed littlefs, drivers replaying recorded traffic) on the emulated Pico, then bisects to
256 bytes the free heap that one reading cycle (measure -> encode -> sign -> outbox append), one sign and one
lone ``bytearray(512)`` need:

- ``holes``: the ballast method of tests/micropython/heap_probe.py with a fill that cannot stop early (the
  ballast is a chain of pairs, so it never needs one big free area to grow; a list's append does);
- ``one_area``: a reserve of the size asked for is allocated first, the rest of the heap is filled, the
  reserve is dropped: the work gets that much free heap as one area, and every other hole is taken.

Prints one JSON line. A measuring tool for docs/benchmarks.md (issue 15), not a test.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

PROBES = """
def fill_heap_to(headroom):
    ballast = None
    chunk = 1 << 20
    while chunk >= 16:
        want = gc.mem_free() - headroom
        if want < 16:
            break
        try:
            ballast = (bytearray(min(chunk, want)), ballast)
        except MemoryError:
            chunk //= 2
    return ballast


def completes(fn, headroom, one_area):
    gc.collect()
    try:
        reserve = bytearray(headroom) if one_area else None
    except MemoryError:  # no free area that big: the question does not arise
        return False
    ballast = fill_heap_to(0 if one_area else headroom)
    reserve = None
    gc.collect()
    try:
        fn()
        ok = True
    except MemoryError:
        ok = False
    ballast = None
    gc.collect()
    return ok


def needed(fn, one_area, high=32768, step=256):
    low = 0
    if not completes(fn, high, one_area):
        return None
    while high - low > step:
        mid = (low + high) // 2
        if completes(fn, mid, one_area):
            high = mid
        else:
            low = mid
    return high


out = {}
for way, one_area in (("one_area", True), ("holes", False)):
    out[way] = {"cycle": needed(one_cycle, one_area), "sign": needed(one_sign, one_area),
                "bytearray_512": needed(lambda: bytearray(512), one_area)}
print(json.dumps(out))
"""


def main() -> None:
    from carbontrace.benchmarks import firmware_runtimes
    from simulators import firmware_path

    firmware_path.ensure()
    from tests.micropython import pico_emulator
    from tests.micropython.mpy_set import build_mpy_set
    from tests.micropython.ram_flash import RAM_FLASH, RAM_FLASH_ROOT

    with tempfile.TemporaryDirectory(prefix="ct-heap-") as tmp:
        image = pico_emulator.stage_fs_image(build_mpy_set(Path(tmp) / "fw"), Path(tmp))
        setup = firmware_runtimes._setup_program(RAM_FLASH_ROOT, RAM_FLASH)
        run = pico_emulator.run_pico(image, [("setup.py", setup), ("probes.py", PROBES)], timeout=2400)
    if run.returncode != 0:
        raise SystemExit(f"emulated Pico run failed: {run.stderr.strip()[-500:]}")
    result = next(line for line in reversed(run.stdout.splitlines()) if line.startswith("{"))
    sys.stdout.write(json.dumps(json.loads(result)) + "\n")


if __name__ == "__main__":
    main()
