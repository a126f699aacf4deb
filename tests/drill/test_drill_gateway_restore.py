"""The gateway_restore drill (issue 18) over the real pipeline (Mosquitto, gateway process, cloud process on
SQLite with the embedded EVM): mid-load the gateway is backed up while it runs (`carbontrace gateway backup`),
goes on uploading, then its machine is wiped (spool, config, key) and the backup restored onto the empty paths
(`carbontrace gateway restore`). The restored spool's batches the cloud already holds are acknowledged by their
duplicate receipts; every reading is stored exactly once, anchored and verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.drill_runner import run_drills

pytestmark = pytest.mark.timeout(240)


def test_gateway_restore_drill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    done, report = run_drills(tmp_path, "gateway_restore")
    result = report["drills"]["gateway_restore"]
    assert result["sent"] == 60, result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["anchored"] == result["sent"] and result["verified"], result
    restored = next(n for n in result["notes"] if n.startswith("gateway restored from a backup"))
    assert "acknowledged 0 batch(es)" not in restored, restored  # the restored spool really re-uploaded
    assert (tmp_path / "work" / "gw.lost" / "spool.sqlite").exists()  # the old machine's state really went away
    assert result["passed"] and done.returncode == 0, done.stderr[-3000:]
