"""Firmware: the device's signer (``reading.sign_reading``, pure Python) under MicroPython-wasm and CPython.

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

from carbontrace.benchmarks.common import Row, SectionResult
from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading

REPO_ROOT = Path(__file__).resolve().parents[2]
MPY_RUN = REPO_ROOT / "tools" / "mpy_run.mjs"
DEVICE_PROTOCOL_MODULES = ("__init__", "errors", "cbor", "p256", "cose", "reading", "merkle", "topics")

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
        for name in DEVICE_PROTOCOL_MODULES:
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


def run(count: int) -> SectionResult:
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
    result.details = {"signatures": count, "cpython": cpython, "micropython": micropython}
    return result
