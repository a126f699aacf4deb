"""Shared test fixtures: paths to the external vectors, free ports, real servers started per test.

In CI (CI=true) a skipped test fails the run: every real server a test needs must start here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = (REPO_ROOT / ".." / "shared").resolve()
VECTORS = SHARED / "vectors"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("mosquitto is not installed; run `make setup` (scripts/ensure-debs.sh)")


class MosquittoBroker:
    """A real Mosquitto on a loopback port, with persistence in a temp dir so restarts keep sessions."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        # Mosquitto started as root drops to the `mosquitto` user, which must be able to write its
        # persistence file here (else sessions and retained messages are lost across restarts).
        os.chmod(workdir, 0o777)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nautosave_interval 1\nmax_inflight_messages 100\n"
            "max_queued_messages 100000\nlog_dest stderr\nlog_type error\n"
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


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
