"""The committed contract artifacts are exactly what solc-js makes of the committed sources."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from cloud.chain import NAIVE_STORE_ARTIFACT, REGISTRY_ARTIFACT
from tests.conftest import REPO_ROOT


def test_artifacts_are_the_sources_compiled(tmp_path: Path) -> None:
    """Re-run solc-js; the committed artifacts must be byte-identical to a fresh compile."""
    subprocess.run(
        ["node", "scripts/compile_contracts.mjs", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    for committed in (REGISTRY_ARTIFACT, NAIVE_STORE_ARTIFACT):
        fresh = tmp_path / committed.name
        assert fresh.read_bytes() == committed.read_bytes(), f"{committed.name} is stale: npm run compile-contracts"
        artifact = json.loads(committed.read_text())
        source = (REPO_ROOT / artifact["sourcePath"]).read_bytes()
        assert artifact["sourceSha256"] == hashlib.sha256(source).hexdigest()
        assert artifact["evmVersion"] == "shanghai"
        assert artifact["optimizer"] == {"enabled": True, "runs": 200}
        pinned = json.loads((REPO_ROOT / "package.json").read_text())["dependencies"]["solc"]
        assert artifact["compiler"]["version"].startswith(pinned + "+commit.")
