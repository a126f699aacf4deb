"""A short drill subset over the real pipeline (Mosquitto, gateway process, cloud process on SQLite with
the embedded EVM): kill -9 the gateway, then stop the cloud for a while. Nothing may be lost or duplicated,
everything must be anchored and still verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(240)


def test_gateway_kill_and_cloud_stop_lose_nothing(tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.drill", "--only", "gateway_kill,cloud_stop", "--load-s", "3",
         "--outage-s", "1", "--rate", "20", "--json-out", str(out), "--keep", str(tmp_path / "work")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=230, check=False,
    )
    assert out.exists(), done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["drills"]) == {"gateway_kill", "cloud_stop"}
    for name, result in report["drills"].items():
        assert result["sent"] == 60, (name, result)
        assert result["lost"] == 0 and result["duplicated"] == 0, (name, result)
        assert result["anchored"] == result["sent"], (name, result)
        assert result["verified"], (name, result)
        assert result["recover_s"] is not None and result["recover_s"] >= 0, (name, result)
        assert result["passed"], (name, result)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gateway_kill" in done.stdout and "PASS" in done.stdout
