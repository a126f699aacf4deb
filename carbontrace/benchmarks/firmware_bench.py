"""Firmware: the device's signer (``reading.sign_reading``, pure Python) under MicroPython-wasm and CPython, and
the signer and one reading cycle on the MicroPython unix port and an emulated Raspberry Pi Pico
(``firmware_runtimes``: sign time, allocation, heap headroom as one free area, tests/micropython/heap_probe.py).

MicroPython figures come from the real interpreter (npm @micropython/micropython-webassembly-pyscript via
tools/mpy_run.mjs): ticks_ms around the sign loop and ``gc.mem_alloc`` deltas. That port never collects
while Python runs, so the allocation delta of one signature is what the signer allocates (an upper bound
of its live peak). CPython's figure is tracemalloc's peak for one signature.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from carbontrace.benchmarks import firmware_runtimes
from carbontrace.benchmarks.common import Row, SectionResult
from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading

REPO_ROOT = Path(__file__).resolve().parents[2]
MPY_RUN = REPO_ROOT / "tools" / "mpy_run.mjs"


def device_protocol_modules() -> tuple[str, ...]:
    """The protocol modules a board gets: firmware/manifest.py's list, read through the build script."""
    from tests.micropython.mpy_set import build_script

    modules: tuple[str, ...] = build_script().MANIFEST.PROTOCOL_MODULES
    return modules

MP_SCRIPT = """
import gc, json, time
from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading
key = p256.private_key_from_bytes(b"\\x07" * 32)
count = COUNT
reading = Reading("dev-bench-1", 1, 1700000000, "1.0.0", co2_ppm=612, temperature_centi_c=2150,
                  humidity_centi_pct=4500, energy_wh=123456, power_deci_w=1200)
sign_reading(reading, key)
gc.collect()
before = gc.mem_alloc()
sign_reading(reading, key)
one = gc.mem_alloc() - before
gc.collect()
start = time.ticks_ms()
for seq in range(count):
    sign_reading(Reading("dev-bench-1", seq, 1700000000 + seq, "1.0.0", co2_ppm=612, temperature_centi_c=2150,
                         humidity_centi_pct=4500, energy_wh=123456 + seq, power_deci_w=1200), key)
elapsed = time.ticks_diff(time.ticks_ms(), start)
print(json.dumps({"ms_per_sign": elapsed / count, "alloc_per_sign": one}))
"""


def _micropython(count: int) -> dict[str, float] | str:
    node = shutil.which("node")
    package = REPO_ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if node is None or not package.is_dir():
        return "MicroPython-wasm not installed (make setup: node + npm packages)"
    with tempfile.TemporaryDirectory(prefix="ct-bench-mp-") as tmp:
        staged = Path(tmp) / "carbontrace_protocol"
        staged.mkdir()
        for name in device_protocol_modules():
            source = REPO_ROOT / "carbontrace_protocol" / f"{name}.py"
            if source.is_file():
                shutil.copy2(source, staged / source.name)
        done = subprocess.run([node, str(MPY_RUN), "--lib", str(staged), "-c",
                               MP_SCRIPT.replace("COUNT", str(count))],
                              capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        return f"MicroPython run failed: {done.stderr.strip()[-300:]}"
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _cpython(count: int) -> dict[str, float]:
    key = p256.private_key_from_bytes(b"\x07" * 32)
    reading = Reading("dev-bench-1", 1, 1_700_000_000, "1.0.0", co2_ppm=612, temperature_centi_c=2150,
                      humidity_centi_pct=4500, energy_wh=123456, power_deci_w=1200)
    sign_reading(reading, key)
    tracemalloc.start()
    sign_reading(reading, key)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    for seq in range(count):
        sign_reading(Reading("dev-bench-1", seq, 1_700_000_000 + seq, "1.0.0", co2_ppm=612,
                             temperature_centi_c=2150, humidity_centi_pct=4500, energy_wh=123456 + seq,
                             power_deci_w=1200), key)
    return {"ms_per_sign": 1000 * (time.perf_counter() - start) / count, "peak_bytes": peak}


PICO = "emulated RP2040"
UNIX = "MicroPython unix port (x86-64)"


def _alloc_row(figure: str, value: int, reference: float, reference_name: str) -> Row:
    if value < 0:  # alloc_of: minus the free heap one sign exhausted with the GC off
        return Row("firmware", figure, -value, "bytes", reference, reference_name,
                   note="a lower bound: one sign allocates more than the whole free heap with the GC off")
    return Row("firmware", figure, value, "bytes", reference, reference_name)


def _headroom_row(figure: str, value: int | None, note: str) -> Row:
    if value is None:
        return Row("firmware", figure, None, "bytes",
                   note="not found: needs more than the heap's largest free area or "
                        f"{firmware_runtimes.HEADROOM_HIGH} bytes")
    return Row("firmware", figure, value, "bytes", note=note)


def _unix_rows(unix: dict[str, Any] | str, cpython: dict[str, float]) -> list[Row]:
    if isinstance(unix, str):
        return [Row("firmware", f"sign time, {UNIX}", None, "ms", cpython["ms_per_sign"], "CPython",
                    note=f"not available: {unix}")]
    heap_note = (f"one free area, the rest ballast, -X heapsize={unix['heapsize']}; "
                 "64-bit objects: an upper bound of a board's")
    return [
        Row("firmware", f"sign time, {UNIX}", unix["ms_per_sign"], "ms", cpython["ms_per_sign"],
            "same signer on CPython"),
        _alloc_row(f"heap allocated per sign, {UNIX} (GC off)", unix["alloc_bytes_per_sign"],
                   cpython["peak_bytes"], "CPython tracemalloc peak"),
        _headroom_row(f"heap headroom for one sign, {UNIX}", unix["headroom_bytes_sign"], heap_note),
        _headroom_row(f"heap headroom for one reading cycle, {UNIX}", unix["headroom_bytes_cycle"], heap_note),
    ]


def _pico_rows(pico: dict[str, Any] | str | None, cpython: dict[str, float]) -> list[Row]:
    figures = (f"sign time, {PICO} (cycles)", f"sign time, {PICO} @125 MHz",
               f"heap allocated per sign, {PICO} (GC off)", f"heap headroom for one sign, {PICO}",
               f"heap headroom for one reading cycle, {PICO}",
               f"heap headroom for one 512-byte bytearray, {PICO}", f"heap in use after setup, {PICO}")
    if pico is None or isinstance(pico, str):
        note = ("skipped in --quick: minutes of emulation (run without --quick)" if pico is None
                else f"not available: {pico}")
        return [Row("firmware", figure, None, "", note=note) for figure in figures]
    heap_note = "one free area, the rest of the board's 246 KB heap ballast; the cycle's files on a RAM-backed littlefs"
    return [
        Row("firmware", figures[0], pico["cycles_per_sign"], "cycles",
            note="rp2040js core.cycles; no flash-cache misses or bus waits: a lower bound for a real Pico"),
        Row("firmware", figures[1], pico["emulated_ms_per_sign"], "ms", cpython["ms_per_sign"],
            "same signer on CPython"),
        _alloc_row(figures[2], pico["alloc_bytes_per_sign"], cpython["peak_bytes"],
                   "CPython tracemalloc peak"),
        _headroom_row(figures[3], pico["headroom_bytes_sign"], heap_note),
        _headroom_row(figures[4], pico["headroom_bytes_cycle"], heap_note),
        # the method's own floor: the smallest work that needs one 512-byte block (with one free area it is
        # that block, to the search's step; holes-only fills gave the loaded heap's fragmentation here)
        _headroom_row(figures[5], pico["headroom_bytes_alloc512"],
                      "one free area: the search's floor for any work needing one 512-byte block"),
        Row("firmware", figures[6], pico["heap_used_after_setup"], "bytes",
            note="gc.mem_alloc after imports, app set-up and one cycle, collected"),
    ]


def run(count: int, emulated: bool = True) -> SectionResult:
    cpython = _cpython(count)
    micropython = _micropython(count)
    result = SectionResult()
    if isinstance(micropython, str):
        result.rows.append(Row("firmware", "sign time, MicroPython-wasm", None, "ms", cpython["ms_per_sign"],
                               "CPython", note=f"not available: {micropython}"))
    else:
        result.rows.append(Row("firmware", "sign time, MicroPython-wasm", micropython["ms_per_sign"], "ms",
                               cpython["ms_per_sign"], "same signer on CPython"))
        result.rows.append(Row("firmware", "heap allocated per sign, MicroPython-wasm (gc.mem_alloc)",
                               micropython["alloc_per_sign"], "bytes", cpython["peak_bytes"],
                               "CPython tracemalloc peak"))
    unix = firmware_runtimes.unix_port(count)
    result.rows.extend(_unix_rows(unix, cpython))
    pico = firmware_runtimes.emulated_pico() if emulated else None
    result.rows.extend(_pico_rows(pico, cpython))
    result.details = {"signatures": count, "cpython": cpython, "micropython": micropython, "unix_port": unix,
                      "emulated_pico": pico if pico is not None else "skipped in --quick"}
    return result
