"""Chains for the contract tests: the in-process EVM and a real Hardhat 2 node started here.

The Hardhat node is carbontrace.servers.HardhatNode: node_modules/.bin/hardhat with the repo's hardhat.config.cjs,
on a free loopback port, with telemetry prompts off and stdin closed; it never needs the network (no compiler:
artifacts come from solc-js).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from carbontrace.servers import AnvilNode, HardhatNode
from cloud.chain import Chain, RegistryContract, connect_embedded, connect_rpc, deploy_registry
from tests.chain.contract_helpers import Parties

HARDHAT_READY_TIMEOUT_S = 30.0

# (chain kind, operation) -> gas used; filled by the gas test, printed at the end of the run.
GAS_TABLE: dict[tuple[str, str], int] = {}


@contextmanager
def running_hardhat(prefix: str = "ct-hardhat-") -> Iterator[HardhatNode]:
    """A Hardhat node started in a temp dir of its own, stopped (and the dir removed) on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        node = HardhatNode(Path(tmp))
        try:
            node.start(timeout=HARDHAT_READY_TIMEOUT_S)
            yield node
        finally:
            node.stop()


@contextmanager
def running_anvil(*extra_args: str) -> Iterator[AnvilNode]:
    """An Anvil node with no unlocked accounts (`--accounts 0`), in a temp dir of its own."""
    with tempfile.TemporaryDirectory(prefix="ct-anvil-") as tmp:
        node = AnvilNode(Path(tmp), extra_args=extra_args)
        try:
            node.start()
            yield node
        finally:
            node.stop()


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    with running_anvil() as node:
        yield node


@pytest.fixture(scope="session")
def hardhat_node() -> Iterator[HardhatNode]:
    with running_hardhat() as node:
        yield node


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
    with running_hardhat() as node:
        yield node


@pytest.fixture
def parties(chain: Chain) -> Parties:
    return Parties(chain)


@pytest.fixture
def registry(chain: Chain, parties: Parties) -> RegistryContract:
    contract, _ = deploy_registry(chain, parties.operator)
    return contract
