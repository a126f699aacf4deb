"""The restore_older_than_chain drill (issue 18) over the real pipeline (Mosquitto, gateway process, cloud process
on SQLite, a Hardhat node, js-ipfs): a backup is taken under load, checkpoints go on being anchored, the cloud's
machine is lost and the older backup restored (the halt chain_ahead_of_database), `carbontrace cloud
recover-from-chain` rebuilds the missing checkpoints and batches from the chain and IPFS, the halt clears, the
cloud and gateway start again. Every reading stored exactly once and anchored, every batch verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drill.drill_runner import run_drills

pytestmark = pytest.mark.timeout(240)


def test_restore_older_than_chain_drill_recovers_from_the_chain(tmp_path: Path) -> None:
    done, report = run_drills(tmp_path, "restore_older_than_chain", "--hardhat", "--ipfs")
    result = report["drills"]["restore_older_than_chain"]
    assert not result.get("skipped"), result
    assert result["sent"] == 60, result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["anchored"] == result["sent"] and result["verified"], result
    notes = " ".join(result["notes"])
    assert "halts ['chain_ahead_of_database']" in notes and "recover-from-chain: checkpoints [" in notes, result
    assert "NOT reached" not in notes, result
    assert result["passed"] and done.returncode == 0, done.stderr[-3000:]
