"""`make demo` end to end: the same command a new user runs, on embedded defaults, with real processes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "carbontrace.demo", "--out", str(out), "--seconds", "12", "--devices", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted by gateway"] > 0
    assert summary["checkpoints anchored"] >= 1
    assert summary["bundles verified"] == "reading: exit 0, emissions: exit 0"
    assert summary["tamper attempts caught at the right step"] == "3/3"
    assert summary["raw readings visible to public"] == "no"
    # every injected rejection (forged device, tampered payloads) was counted by the gateway, reason by reason
    assert summary["rejected by gateway"] == summary["rejections the fleet injected"]
    assert summary["missing readings (gaps)"] == summary["gaps the fleet's rejected readings leave"]
    for name in ("reading-bundle.json", "emissions-bundle.json"):
        assert json.loads((out / name).read_text())["items"]
    assert "Summary" in result.stdout
    # Keys, API keys and databases the demo wrote: 0600, in 0700 directories.
    run = out / "run"
    secrets = [
        run / "cloud" / "operator-api-key",
        run / "cloud" / "cloud-chain-key.hex",
        run / "cloud" / "cloud-key.hex",
        run / "cloud" / "cloud.db",
        run / "keys" / "enterprise-chain-key.hex",
        run / "keys" / "platform-chain-key.hex",
        run / "gateway" / "gateway.key",
    ]
    secrets += [p for p in run.rglob("*") if p.suffix in (".toml", ".sqlite", ".db") or p.name.endswith(".key")]
    flash_keys = list((run / "fleet").rglob("device_key.bin"))  # the virtual devices' flash: protected by its dir
    assert flash_keys and all(stat.S_IMODE(p.parent.stat().st_mode) == 0o700 for p in flash_keys)
    wide = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in secrets
            if stat.S_IMODE(p.stat().st_mode) != 0o600}
    wide |= {str(p.parent.relative_to(out)): oct(stat.S_IMODE(p.parent.stat().st_mode)) for p in secrets
             if stat.S_IMODE(p.parent.stat().st_mode) != 0o700}
    assert wide == {}, wide


def test_demo_runs_on_a_node_with_no_unlocked_accounts(tmp_path: Path) -> None:
    """`make demo ARGS='--chain anvil'`: the same pipeline on Anvil --accounts 0 (a block a second), where the
    cloud signs every transaction and waits two blocks before a checkpoint counts as anchored."""
    out = tmp_path / "demo-anvil"
    result = subprocess.run(
        [sys.executable, "-m", "carbontrace.demo", "--out", str(out), "--seconds", "8", "--devices", "1",
         "--chain", "anvil"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=480,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "--accounts 0" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoints anchored"] >= 1
    assert summary["bundles verified"] == "reading: exit 0, emissions: exit 0"
    assert summary["tamper attempts caught at the right step"] == "3/3"
