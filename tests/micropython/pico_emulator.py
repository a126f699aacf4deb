"""Run programs on an emulated Raspberry Pi Pico: MicroPython 1.27.0 (RPI_PICO) on rp2040js, one boot per call.

What runs there comes from ../shared/emulators/rp2040 beside the project (``CARBONTRACE_RP2040_DIR``
overrides it): the UF2 image, Raspberry Pi's boot ROM and ``mklfs.py`` (the board's littlefs geometry). They
are referenced there, not copied. The runner is tools/mp_rp2040.mjs on npm rp2040js (package.json).

The programs' files reach the board as a littlefs image preloaded at the filesystem's flash offset: the
emulator does not model flash erase/program, so the board cannot write its own filesystem (code that
writes files needs a RAM-backed filesystem there: tests/micropython/ram_flash.py). Emulated time is
instruction-level at 125 MHz with no flash-cache misses or bus waits: a lower bound for a real Pico.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.micropython.mpy_set import REPO_ROOT, RuntimeMissing

EMULATOR_DIR = Path(os.environ.get("CARBONTRACE_RP2040_DIR", REPO_ROOT.parent / "shared" / "emulators" / "rp2040"))
IMAGE_NAME = "micropython-1.27.0-RPI_PICO.uf2"
BOOTROM_NAME = "bootrom.mjs"
MKLFS_NAME = "mklfs.py"
RUNNER = REPO_ROOT / "tools" / "mp_rp2040.mjs"
RP2040JS = REPO_ROOT / "node_modules" / "rp2040js"
CLOCK_HZ = 125_000_000  # RP2040 at the SDK's default system clock
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Step:
    """One script of a run: its emulated cycles (core.cycles), whether it raised, and what it printed."""

    script: str
    cycles: int
    host_s: float
    ok: bool
    output: str

    @property
    def emulated_ms(self) -> float:
        return self.cycles * 1000 / CLOCK_HZ


@dataclass(frozen=True)
class PicoRun:
    returncode: int
    stdout: str
    stderr: str
    steps: list[Step]


def emulator_files() -> tuple[str, Path, Path, Path]:
    """(node, image, boot ROM, mklfs.py), or RuntimeMissing naming what is missing."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeMissing("node is not installed; the emulated Pico runs on node >= 18 (make setup)")
    if not (RP2040JS / "package.json").is_file():
        raise RuntimeMissing(f"{RP2040JS} is missing: run `make setup` (npm rp2040js 1.4.1, package.json)")
    files = [EMULATOR_DIR / name for name in (IMAGE_NAME, BOOTROM_NAME, MKLFS_NAME)]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise RuntimeMissing(
            f"the emulated-Pico kit is missing {', '.join(missing)}: it lives in ../shared/emulators/rp2040 beside "
            "the project (no registry ships a Pico image or the boot ROM); set CARBONTRACE_RP2040_DIR to its folder"
        )
    return node, files[0], files[1], files[2]


def make_fs_image(stage_dir: Path, out: Path) -> Path:
    """A littlefs image of ``stage_dir`` (files keep their paths) for the board's filesystem, by the kit's mklfs.py."""
    _, _, _, mklfs = emulator_files()
    done = subprocess.run([sys.executable, str(mklfs), str(stage_dir), str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeMissing(f"mklfs.py failed (littlefs-python, requirements.lock):\n{done.stderr[-2000:]}")
    return out


def _steps(stderr: str) -> list[Step]:
    steps = []
    for line in stderr.splitlines():
        if line.startswith('{"mp_rp2040_step"'):
            raw: dict[str, Any] = json.loads(line)["mp_rp2040_step"]
            steps.append(Step(raw["script"], int(raw["cycles"]), float(raw["host_s"]), bool(raw["ok"]), raw["output"]))
    return steps


def run_pico(fs_image: Path, programs: list[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT) -> PicoRun:
    """Boot once, then run ``programs`` ((name, source) pairs) one after another in the same interpreter."""
    node, image, bootrom, _ = emulator_files()
    with tempfile.TemporaryDirectory(prefix="ct-pico-") as tmp:
        scripts = []
        for name, source in programs:
            path = Path(tmp) / name
            path.write_text(source, encoding="utf-8")
            scripts.append(str(path))
        command = [node, str(RUNNER), "--uf2", str(image), "--bootrom", str(bootrom), "--fs", str(fs_image), *scripts]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT)
    return PicoRun(done.returncode, done.stdout, done.stderr, _steps(done.stderr))


def step_named(run: PicoRun, script: str) -> Step:
    for step in run.steps:
        if step.script == script:
            return step
    raise AssertionError(f"{script} did not run on the emulated Pico\n--- stderr ---\n{run.stderr[-4000:]}")


def stage_fs_image(lib_dir: Path, out_dir: Path) -> Path:
    """The .mpy set (``lib_dir``, from mpy_set.build_mpy_set) as the board's /lib, in a littlefs image."""
    stage = out_dir / "stage"
    shutil.copytree(lib_dir, stage / "lib")
    return make_fs_image(stage, out_dir / "fs.img")
