"""The backup_restore drill (issue 18) over the real pipeline (Mosquitto, gateway process, cloud process on
SQLite with the embedded EVM): mid-load the cloud is backed up while it runs, its machine wiped, the backup
restored onto the empty paths and the cloud started on it. Every reading must be stored exactly once and
anchored, and every batch, the ones anchored before the backup too, must verify against the restored chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.drill_runner import run_drills

pytestmark = pytest.mark.timeout(240)


def test_backup_restore_drill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    done, report = run_drills(tmp_path, "backup_restore")
    result = report["drills"]["backup_restore"]
    assert result["sent"] == 60, result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["anchored"] == result["sent"] and result["verified"], result
    assert any("restored from a backup" in note for note in result["notes"]), result
    assert (tmp_path / "work" / "cloud.lost").is_dir()  # the old machine's state really went away
    assert result["passed"] and done.returncode == 0, done.stderr[-3000:]
