"""The embedded development chain (eth-tester on py-evm), kept across restarts by a transaction journal.

The in-process EVM lives in memory, so a restarted embedded cloud used to deploy a fresh registry: its old
checkpoints, keys and bundles pointed at a contract that no longer existed. Here every transaction the chain
accepts is appended to a journal file (one JSON line, flushed and fsynced before the send returns, so the cloud
never learns of a transaction the journal lacks), and a new process replays the journal into a fresh EVM
before anything else runs. The EVM is deterministic: the same transactions from the same genesis give the same
transaction hashes, contract addresses, block numbers and storage. Only block timestamps differ (py-evm stamps
blocks with the wall clock), and nothing the registry verifies depends on them. A replayed transaction whose
hash differs from the journal's, or that fails, stops the start with JournalMismatch: the journal is not the
history of this chain (another genesis, an edited file), and continuing would silently fork it.

A torn last line (a crash in the middle of a write) is a transaction whose send never returned: it is
dropped, and the file truncated to the last whole line. Production chains keep their own state; this is only
for `CT_CLOUD_CHAIN=embedded` (Settings.embedded_chain_state).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from eth_tester import EthereumTester
from web3 import EthereumTesterProvider, Web3

logger = logging.getLogger(__name__)


class JournalMismatch(RuntimeError):
    """The journal does not replay on this chain: not its history."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _hex(value: Any) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else str(value).lower()


class ChainJournal:
    """Append-only JSON lines: {"raw": signed transaction hex} or {"send": unlocked-account transaction}, each
    with the "hash" the chain gave it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        if len(whole) != len(data):
            logger.warning("embedded chain journal %s: dropping a torn last line (%d bytes)", self.path,
                           len(data) - len(whole))
            with open(self.path, "r+b") as handle:
                handle.truncate(len(whole))
                os.fsync(handle.fileno())
        return [json.loads(line) for line in whole.splitlines() if line.strip()]

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


class JournaledTester:
    """Replays a journal into an EthereumTester, then journals every transaction sent to it."""

    def __init__(self, tester: EthereumTester, journal: ChainJournal) -> None:
        self.tester = tester
        self.journal = journal
        self.replayed = 0
        self._replay()
        raw_send, unlocked_send = tester.send_raw_transaction, tester.send_transaction

        def send_raw_transaction(raw: Any) -> Any:
            tx_hash = raw_send(raw)
            self.journal.append({"raw": _hex(raw), "hash": _hex(tx_hash)})
            return tx_hash

        def send_transaction(transaction: dict[str, Any]) -> Any:
            tx_hash = unlocked_send(transaction)
            self.journal.append({"send": _jsonable(transaction), "hash": _hex(tx_hash)})
            return tx_hash

        # eth-tester's web3 provider looks its methods up on the instance by name
        tester.send_raw_transaction = send_raw_transaction  # type: ignore[method-assign]
        tester.send_transaction = send_transaction  # type: ignore[method-assign]

    def _replay(self) -> None:
        for number, entry in enumerate(self.journal.entries(), start=1):
            try:
                if "raw" in entry:
                    tx_hash = self.tester.send_raw_transaction(entry["raw"])
                else:
                    tx_hash = self.tester.send_transaction(entry["send"])
            except Exception as err:
                raise JournalMismatch(
                    f"{self.journal.path}: transaction {number} ({entry.get('hash')}) fails on replay: {err}"
                ) from err
            if _hex(tx_hash) != entry["hash"]:
                raise JournalMismatch(
                    f"{self.journal.path}: transaction {number} replays as {_hex(tx_hash)}, not {entry['hash']}"
                )
            self.replayed = number
        if self.replayed:
            logger.info("embedded chain: replayed %d transactions from %s", self.replayed, self.journal.path)


def embedded_web3(journal_path: Path | None) -> Web3:
    """A Web3 over a fresh in-process EVM; with a journal path, its history replayed and kept there."""
    tester = EthereumTester()  # what EthereumTesterProvider() makes: py-evm, deterministic genesis
    if journal_path is not None:
        JournaledTester(tester, ChainJournal(journal_path))
    return Web3(EthereumTesterProvider(ethereum_tester=tester))
