"""ES256 sign on the emulated Pico, the MicroPython unix port and CPython, for one source tree.

    .venv/bin/python tools/bench_signer_pico.py                    # this checkout
    .venv/bin/python tools/bench_signer_pico.py --tree /work/main  # another checkout (e.g. before a change)

Builds the tree's firmware (its scripts/build_firmware.py, bytecode only), puts lib/ in a littlefs image and
runs ../shared/emulators/rp2040/bench_device.py there on the emulated RP2040 (rp2040js, 125 MHz; ~5 min of
wall time) and on the unix port (fixed heap, --unix-heap), then times p256.sign under CPython. Prints one
`runtime figure value` line per figure. A measuring tool, not a test: figures depend on the host (not the
emulated cycles) and carbontrace bench stays the place for tracked figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATORS = Path(os.environ.get("CARBONTRACE_EMULATORS", REPO_ROOT.parent / "shared" / "emulators"))
PICO_IMAGE = "micropython-1.27.0-RPI_PICO.uf2"

CPYTHON_SIGN = """
import hashlib, time
from carbontrace_protocol import cose, p256
key = p256.private_key_from_bytes(hashlib.sha256(b"carbontrace/test-device-key/1").digest())
msg = cose.sig_structure(cose.protected_header(b"esp32-lab-01"), bytes(120))
first = p256.sign(key, msg)
rounds = %d
best = None
for _ in range(5):  # best of five: the CPU time of the least-disturbed repetition
    t0 = time.process_time()
    for _ in range(rounds):
        assert p256.sign(key, msg) == first
    ms = (time.process_time() - t0) / rounds * 1000
    best = ms if best is None else min(best, ms)
print("cpu_ms_per_sign", best)
print("module", p256.__file__)
print("sig_hex_prefix", first[:8].hex())
"""


def run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def stage_firmware(tree: Path, work: Path) -> Path:
    """The tree's lib/ (.mpy) as a littlefs image for the RPI_PICO filesystem; returns the image path."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    run([sys.executable, str(tree / "scripts" / "build_firmware.py"), "--out", str(work / "firmware")], env=env)
    shutil.copytree(work / "firmware" / "lib", work / "stage" / "lib")  # not main.py: the REPL must stay free
    image = work / "lib.img"
    run([sys.executable, str(EMULATORS / "rp2040" / "mklfs.py"), str(work / "stage"), str(image)])
    return image


def figures(output: str) -> dict[str, str]:
    table = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value and not key.startswith("["):
            table[key] = value
    return table


def pico(image: Path, work: Path, rounds: int) -> dict[str, str]:
    # rp2040js is resolved from the runner's folder: run a copy inside this checkout (node_modules/rp2040js)
    runner_dir = REPO_ROOT / "build" / "rp2040-runner"
    runner_dir.mkdir(parents=True, exist_ok=True)
    for name in ("mp_rp2040.mjs", "bootrom.mjs"):
        shutil.copy2(EMULATORS / "rp2040" / name, runner_dir / name)
    result = subprocess.run(
        ["node", str(runner_dir / "mp_rp2040.mjs"), str(EMULATORS / "rp2040" / PICO_IMAGE), str(image),
         str(EMULATORS / "rp2040" / "bench_device.py"), "/lib", str(rounds)],
        capture_output=True, text=True, timeout=3600, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"emulated Pico run failed:\n{result.stdout}\n{result.stderr}")
    table = figures(result.stdout)
    for line in result.stderr.splitlines():  # "[bench_device.py] N cycles = ..." for the whole script
        if line.startswith("[bench_device.py]") and " cycles = " in line:
            table["script_cycles"] = line.split()[1]
    return table


def unix_port(work: Path, heap: str, rounds: int) -> dict[str, str]:
    micropython = Path(sys.executable).with_name("micropython")
    output = run([str(micropython), "-X", f"heapsize={heap}", str(EMULATORS / "rp2040" / "bench_device.py"),
                  str(work / "stage" / "lib"), str(rounds)])
    return figures(output)


def cpython(tree: Path, rounds: int) -> dict[str, str]:
    # cwd too: `python -c` puts the working directory first on sys.path
    env = dict(os.environ, PYTHONPATH=str(tree))
    return figures(run([sys.executable, "-c", CPYTHON_SIGN % rounds], env=env, cwd=tree))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="checkout to measure (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="signs per timing on the emulated Pico")
    parser.add_argument("--unix-heap", default="512k", help="unix port -X heapsize")
    parser.add_argument("--skip-pico", action="store_true", help="unix port and CPython only (seconds, not minutes)")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-signer-") as tmp:
        work = Path(tmp)
        image = stage_firmware(tree, work)
        results = {"unix": unix_port(work, args.unix_heap, 20), "cpython": cpython(tree, 100)}
        if not args.skip_pico:
            results["pico"] = pico(image, work, args.rounds)
    for runtime, table in results.items():
        for key, value in table.items():
            sys.stdout.write(f"{runtime} {key} {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
