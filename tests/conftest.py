"""Shared test fixtures: paths to the external vectors, free ports, real servers started per test.

In CI (CI=true) a skipped test fails the run: every real server a test needs must start here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbontrace.servers import Mosquitto, free_port, wait_for_port

__all__ = ["IN_CI", "REPO_ROOT", "VECTORS", "MosquittoBroker", "free_port", "wait_for_port"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = (REPO_ROOT / ".." / "shared").resolve()
VECTORS = SHARED / "vectors"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# One implementation of the servers for tests, the demo, bench and drills (carbontrace/servers.py).
MosquittoBroker = Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[MosquittoBroker]:
    with tempfile.TemporaryDirectory(prefix="ct-mqtt-") as tmp:
        broker = MosquittoBroker(Path(tmp))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"external test vectors not found at {VECTORS} (../shared beside the project root)")
    return VECTORS


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"CI: {skipped} skipped test(s) count as failures here", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
