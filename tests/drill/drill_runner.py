"""Run `carbontrace drill` as a user would, on a short load, for the drill tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT


def run_drills(tmp_path: Path, only: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The drills named in ``only`` at 20 readings/s for 3 s, 1 s outages (``flags``: the pipeline's, such as
    --hardhat); the process and its JSON report (the work directory kept in tmp_path/work)."""
    out = tmp_path / "drill.json"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.drill", "--only", only, "--load-s", "3",
         "--outage-s", "1", "--rate", "20", "--json-out", str(out), "--keep", str(tmp_path / "work"), *flags],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=230, check=False,
    )
    assert out.exists(), done.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return done, report
