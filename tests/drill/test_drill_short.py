"""A short drill subset over the real pipeline (Mosquitto, gateway process, cloud process on SQLite with
the embedded EVM): kill -9 the gateway, then stop the cloud for a while. Nothing may be lost or duplicated,
everything must be anchored and still verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.drill_runner import run_drills

pytestmark = pytest.mark.timeout(240)


def test_gateway_kill_and_cloud_stop_lose_nothing(tmp_path: Path) -> None:
    done, report = run_drills(tmp_path, "gateway_kill,cloud_stop")
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
