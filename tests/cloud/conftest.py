"""Cloud test fixtures: the app on SQLite or on a PostgreSQL cluster started here, a Hardhat node, a js-ipfs daemon.

The servers are carbontrace.servers' (one implementation for tests, bench and drills). The PostgreSQL cluster is a
real `initdb` + `pg_ctl` of the Debian postgresql-15 binaries in a temp dir, run as the `postgres` OS user when the
tests run as root (PostgreSQL refuses to run as root); each test gets its own database. The Hardhat node comes from
tests/chain/conftest.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carbontrace import servers
from carbontrace.servers import HardhatNode, IpfsDaemon
from tests.chain.conftest import running_hardhat
from tests.cloud.cloud_testkit import app_client, make_settings

__all__ = ["HardhatNode", "IpfsDaemon", "PostgresCluster"]


class PostgresCluster(servers.PostgresCluster):
    """A test cluster: thrown away once stopped, so not durable (fsync off, immediate stop)."""

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir, durable=False)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


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
    with running_hardhat("ct-cloud-hardhat-") as node:
        yield node


@pytest.fixture(scope="session")
def ipfs_daemon() -> Iterator[IpfsDaemon]:
    tmp = tempfile.mkdtemp(prefix="ct-ipfs-")
    daemon = IpfsDaemon(Path(tmp))
    try:
        daemon.init()
        daemon.start()
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
