"""scripts/trace_figures.py (the measured figures) runs end to end at a small size and prints every figure."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_figures_script_small() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/trace_figures.py", "--leaves", "3000", "--readings", "3000", "--repeat", "3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("log size (leaves)") and "3,000" in line for line in lines), done.stdout
    sizes = [line for line in lines if ": size" in line]
    verifies = [line for line in lines if "offline verify" in line]
    latencies = [line for line in lines if line.startswith(("locate ", "verify ")) and "p95" in line]
    assert len(sizes) == len(verifies) == 3 and len(latencies) == 6, done.stdout
    assert all("valid" in line or "located" in line for line in latencies), done.stdout
