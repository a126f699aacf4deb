"""Make the firmware package (``firmware/carbontrace_device``) importable from the simulators.

On a board the package lives in ``/lib``; in this repository it is under ``firmware/``, which pytest puts
on ``sys.path`` itself. The fleet simulator (run through the ``carbontrace`` CLI) adds it here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "firmware"


def ensure() -> None:
    if importlib.util.find_spec("carbontrace_device") is not None:
        return
    if not (FIRMWARE_DIR / "carbontrace_device").is_dir():
        raise ImportError(f"the firmware package is not importable and not found under {FIRMWARE_DIR}")
    sys.path.insert(0, str(FIRMWARE_DIR))
