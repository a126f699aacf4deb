"""Chains for the contract tests: the in-process EVM and a real Hardhat 2 node started here.

The Hardhat node runs from node_modules/.bin/hardhat with the repo's hardhat.config.cjs, on a free loopback port,
with telemetry prompts off and stdin closed; it never needs the network (no compiler: artifacts come from solc-js).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.chain import Chain, ChainUnavailable, RegistryContract, connect_embedded, connect_rpc, deploy_registry
from tests.chain.contract_helpers import Parties
from tests.conftest import REPO_ROOT, free_port, wait_for_port

HARDHAT_BIN = REPO_ROOT / "node_modules" / ".bin" / "hardhat"
HARDHAT_READY_TIMEOUT_S = 30.0

# (chain kind, operation) -> gas used; filled by the gas test, printed at the end of the run.
GAS_TABLE: dict[tuple[str, str], int] = {}


class HardhatNode:
    """`hardhat node` on a free loopback port, its log in workdir."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "hardhat-node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not HARDHAT_BIN.exists():
            raise RuntimeError(f"{HARDHAT_BIN} missing: run `make setup` (npm ci)")
        env = dict(os.environ)
        env.update(
            HARDHAT_DISABLE_TELEMETRY_PROMPT="true",  # no consent prompt, so no telemetry and no error reports
            HARDHAT_HIDE_SOLIDITY_SURVEY_MESSAGE="true",
            NO_COLOR="1",
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(HARDHAT_BIN), "node", "--hostname", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + HARDHAT_READY_TIMEOUT_S
        wait_for_port(self.port, timeout=HARDHAT_READY_TIMEOUT_S)
        while True:  # the port opens a moment before JSON-RPC answers
            try:
                connect_rpc(self.url, timeout_s=2.0)
                return
            except ChainUnavailable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"hardhat node did not start: {self.log_path.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def start_hardhat(workdir: Path) -> HardhatNode:
    node = HardhatNode(workdir)
    node.start()
    return node


@pytest.fixture(scope="session")
def hardhat_node() -> Iterator[HardhatNode]:
    with tempfile.TemporaryDirectory(prefix="ct-hardhat-") as tmp:
        node = start_hardhat(Path(tmp))
        try:
            yield node
        finally:
            node.stop()


@pytest.fixture(params=["embedded", "hardhat"])
def chain(request: pytest.FixtureRequest) -> Chain:
    """Each test runs once on the in-process EVM and once on the Hardhat node."""
    if request.param == "embedded":
        return connect_embedded()
    node: HardhatNode = request.getfixturevalue("hardhat_node")
    return connect_rpc(node.url)


def chain_kind(chain: Chain) -> str:
    return "embedded" if chain.chain_id != 31337 else "hardhat"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not GAS_TABLE:
        return
    kinds = sorted({kind for kind, _ in GAS_TABLE})
    operations = list(dict.fromkeys(op for _, op in GAS_TABLE))
    terminalreporter.section("gas used per transaction (CarbonTraceRegistry / NaiveHashStore)")
    terminalreporter.write_line(f"{'operation':<52}" + "".join(f"{kind:>12}" for kind in kinds))
    for op in operations:
        cells = "".join(f"{GAS_TABLE[(kind, op)]:>12,}" if (kind, op) in GAS_TABLE else f"{'-':>12}" for kind in kinds)
        terminalreporter.write_line(f"{op:<52}{cells}")


@pytest.fixture(scope="session")
def gas_table() -> dict[tuple[str, str], int]:
    """The table pytest_terminal_summary prints (a fixture, so tests write to this module's dict)."""
    return GAS_TABLE


@pytest.fixture
def own_hardhat_node() -> Iterator[HardhatNode]:
    """A node of the test's own, for tests that stop it."""
    with tempfile.TemporaryDirectory(prefix="ct-hardhat-") as tmp:
        node = start_hardhat(Path(tmp))
        try:
            yield node
        finally:
            node.stop()


@pytest.fixture
def parties(chain: Chain) -> Parties:
    return Parties(chain)


@pytest.fixture
def registry(chain: Chain, parties: Parties) -> RegistryContract:
    contract, _ = deploy_registry(chain, parties.operator)
    return contract
