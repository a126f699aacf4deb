"""The registry_migration drill (issue 18) over the real pipeline (Mosquitto, gateway process, cloud process on
SQLite with the embedded EVM): checkpoints anchored on the first registry, `carbontrace cloud migrate-registry`
(the cloud stopped: the embedded chain lives in it; the gateway spools meanwhile), ingestion going on, the rest
anchored on the successor. Nothing lost or duplicated, and `carbontrace verify` finds a bundle made before the
migration and one made after it valid pinned to the old registry and pinned to the new."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.drill_runner import run_drills

pytestmark = pytest.mark.timeout(240)


def test_registry_migration_drill_keeps_history(tmp_path: Path) -> None:
    done, report = run_drills(tmp_path, "registry_migration")
    result = report["drills"]["registry_migration"]
    assert result["sent"] == 60, result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["anchored"] == result["sent"] and result["verified"], result
    checks = result["bundle_checks"]
    assert len(checks) == 4 and set(checks.values()) == {"valid"}, checks
    assert any(note.startswith("migrated from") for note in result["notes"]), result
    on_both = next(n for n in result["notes"] if n.startswith("batches anchored on the old registry"))
    assert ": 0," not in on_both and not on_both.endswith(": 0"), on_both
    assert result["passed"] and done.returncode == 0, done.stderr[-3000:]
