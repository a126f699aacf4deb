"""Cloud test fixtures: the app on SQLite or on a PostgreSQL cluster started here, and a Hardhat node.

The PostgreSQL cluster is a real `initdb` + `pg_ctl` of the Debian postgresql-15 binaries in a temp dir, run
as the `postgres` OS user when the tests run as root (PostgreSQL refuses to run as root); each test gets
its own database. The Hardhat node fixture comes from tests/chain/conftest.py (re-exported here).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.chain.conftest import HardhatNode, start_hardhat
from tests.cloud.cloud_testkit import app_client, make_settings
from tests.conftest import free_port, wait_for_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(workdir, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("PostgreSQL 15 binaries missing: run `make setup` (scripts/ensure-debs.sh)")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-o",
            options,
            "-l",
            str(self.workdir / "pg.log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )

    def create_database(self) -> str:
        name = "ct_" + secrets.token_hex(6)
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    tmp = tempfile.mkdtemp(prefix="ct-pg-")
    cluster = PostgresCluster(Path(tmp))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on SQLite (a file in tmp) and on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cloud.db"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app with embedded defaults (embedded EVM, local content store) on the parametrized database."""
    with app_client(make_settings(tmp_path, database_url=database_url)) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(make_settings(tmp_path)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def cloud_hardhat_node() -> Iterator[HardhatNode]:
    with tempfile.TemporaryDirectory(prefix="ct-cloud-hardhat-") as tmp:
        node = start_hardhat(Path(tmp))
        try:
            yield node
        finally:
            node.stop()


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")


JSIPFS_BIN = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "jsipfs"


class IpfsDaemon:
    """A real js-ipfs daemon (npm ipfs@0.66.1, Kubo RPC API), offline, on loopback ports of its own."""

    def __init__(self, workdir: Path) -> None:
        self.repo = workdir / "repo"
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.log_path = workdir / "ipfs.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "IPFS_PATH": str(self.repo)}

    def init(self) -> None:
        if not JSIPFS_BIN.exists():
            raise RuntimeError(f"{JSIPFS_BIN} missing: run `make setup` (npm ci)")
        subprocess.run(
            [str(JSIPFS_BIN), "init", "--emptyRepo"], env=self.env, check=True, capture_output=True, timeout=120
        )
        config_path = self.repo / "config"
        config = json.loads(config_path.read_text())
        config["Addresses"].update(
            API=f"/ip4/127.0.0.1/tcp/{self.api_port}",
            Gateway=f"/ip4/127.0.0.1/tcp/{free_port()}",
            RPC=f"/ip4/127.0.0.1/tcp/{free_port()}",
            Swarm=[],
            Delegates=[],
        )
        config["Bootstrap"] = []
        config["Discovery"] = {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}}
        config_path.write_text(json.dumps(config))

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(JSIPFS_BIN), "daemon", "--offline", "--enable-preload=false"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.post(f"{self.url}/api/v0/version", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"js-ipfs did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        # js-ipfs leaves its repo lock behind when stopped mid-write; a restart must not trip over it.
        (self.repo / "repo.lock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def ipfs_daemon() -> Iterator[IpfsDaemon]:
    tmp = tempfile.mkdtemp(prefix="ct-ipfs-")
    daemon = IpfsDaemon(Path(tmp))
    daemon.init()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# Measured figures (ingestion throughput, gas per anchor), printed at the end of the run.
CLOUD_FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def cloud_figures() -> dict[str, str]:
    return CLOUD_FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CLOUD_FIGURES:
        terminalreporter.section("CarbonTrace cloud figures")
        for name, value in CLOUD_FIGURES.items():
            terminalreporter.write_line(f"{name:<60} {value}")
