"""Typed client for the CarbonTrace contracts over web3.py.

The chain is either the in-process EVM (`connect_embedded`, eth-tester + py-evm: the default, no node needed) or
any JSON-RPC node (`connect_rpc`: Hardhat or Anvil in tests, a real network in production). The cloud signs its own
transactions with a `ChainSigner` (cloud/chain_signer.py): one nonce owner per account (`Chain` keeps the next
nonce, recovered from the node's pending count after a failed send or a restart), EIP-1559 fees (legacy gasPrice
only when the node's blocks carry no base fee) and a receipt whose status is checked. An address the node has
unlocked is still accepted as a sender (the contract tests use the dev nodes' accounts); the cloud never uses one.

Every state-changing call returns a `TxResult` (hash, gas used, block). A revert is raised as `ContractReverted`
carrying the Solidity custom error's name and decoded arguments; a node that cannot be reached is raised as
`ChainUnavailable` so that the caller can retry later.

Contract artifacts come from cloud/contracts/*.json, written by scripts/compile_contracts.mjs (solc-js).
"""

from __future__ import annotations

import ast
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_tester.exceptions import TransactionFailed
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractLogicError,
    MethodUnavailable,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import BlockIdentifier, EventData, Nonce, TxParams, TxReceipt, Wei

from carbontrace_protocol import ids
from carbontrace_protocol.anchor_commitment import AnchoredFields, CommitmentMismatch, opened_checkpoint
from carbontrace_protocol.ids import key_fingerprint as key_fingerprint  # re-exported: defined once, in ids
from cloud.chain_signer import ChainSigner, LocalKeySigner

ARTIFACTS_DIR = Path(__file__).resolve().parent / "contracts"
REGISTRY_ARTIFACT = ARTIFACTS_DIR / "CarbonTraceRegistry.json"
NAIVE_STORE_ARTIFACT = ARTIFACTS_DIR / "NaiveHashStore.json"

RECEIPT_TIMEOUT_S = 30.0
# Per-transaction gas limit on the embedded chain (see Chain): above any call here, the registry deploy included.
EMBEDDED_GAS_LIMIT = 5_000_000
# Network failures that mean "the chain is not there right now", as opposed to "the chain said no".
_UNREACHABLE: tuple[type[BaseException], ...] = (
    ProviderConnectionError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeExhausted,
)

# What a revert looks like coming out of web3: a ContractLogicError from a JSON-RPC node, eth-tester's own
# TransactionFailed from the embedded chain.
_REVERTED: tuple[type[BaseException], ...] = (ContractLogicError, TransactionFailed)

T = TypeVar("T")
logger = logging.getLogger("carbontrace.chain")

# A sender is either an address the node has unlocked (dev nodes, tests) or a key that signs here.
Sender = str | ChainSigner
# Sends retried when another process used the same nonce first (what nodes answer then, lower-cased).
# Sends of one key from several processes can collide on a nonce; each collision is retried after a random
# pause (so two racing senders stop choosing the same moment), up to NONCE_RETRIES times.
NONCE_RETRIES = 8
NONCE_RETRY_PAUSE_S = 0.05
# What nodes answer a send whose sender cannot pay for gas (geth, Anvil: "insufficient funds for gas * price +
# value"; Hardhat 2: "Sender doesn't have enough funds to send tx"), lower-cased.
_UNFUNDED = ("insufficient funds", "doesn't have enough funds")
_NONCE_RACE = (
    "nonce too low", "already known", "already imported", "replacement transaction underpriced",
    "nonce has already been used",
)
# Blocks one eth_getLogs spans at most: event reads are split into spans this long (the cloud's /rpc refuses more).
LOG_SPAN_BLOCKS = 10_000
# Priority fee when the node cannot suggest one (eth_maxPriorityFeePerGas missing): 1 gwei.
DEFAULT_PRIORITY_FEE_WEI = 10**9


class ChainError(Exception):
    """Base of every error this module raises."""


class OperatorUnfunded(ChainError):
    """The signing account has too little ether for the transaction's gas: someone must fund it."""


class ChainAheadOfDatabase(ChainError):
    """The registry holds checkpoints this cloud's database does not: the database was restored from a backup
    older than the chain. Anchoring cannot go on until the missing log is back (README, "Backup and restore")."""


class ChainUnavailable(ChainError):
    """The node cannot be reached (down, refused, timed out): retry later."""


class ContractReverted(ChainError):
    """The contract reverted. `error_name` is the Solidity custom error ("NotOperator", ...), or "Error" for a
    revert string, "Panic" for a panic code, "unknown" when the node gave no reason."""

    def __init__(self, error_name: str, args: tuple[Any, ...] = (), raw: str = "") -> None:
        self.error_name = error_name
        self.args_decoded = args
        self.raw = raw
        super().__init__(f"{error_name}{args!r}" if args else error_name)


class BindingState(IntEnum):
    NONE = 0
    REQUESTED = 1
    BOUND = 2
    REJECTED = 3
    REVOKED = 4


class KeyState(IntEnum):
    NONE = ids.KEY_NONE
    ACTIVE = ids.KEY_ACTIVE
    REVOKED = ids.KEY_REVOKED


class SignerKind(IntEnum):
    """Who holds a key: a device signs readings, a gateway signs batch headers and aggregates, the cloud signs
    checkpoints and statements."""

    NONE = ids.SIGNER_NONE
    DEVICE = ids.SIGNER_DEVICE
    GATEWAY = ids.SIGNER_GATEWAY
    CLOUD = ids.SIGNER_CLOUD


@dataclass(frozen=True)
class KeyRecord:
    """What the registry's keyState says about a key fingerprint.

    `active_from` is the checkpoint count when the key was registered, `revoked_at` the count when it was revoked
    (None unless revoked). `enterprise_id` is the device's or gateway's enterprise, zeros for a cloud key."""

    state: KeyState
    kind: SignerKind
    signer_id: bytes
    enterprise_id: bytes
    active_from: int
    revoked_at: int | None

    def valid_at(self, seq: int | None) -> bool:
        """Whether a signature in a batch first anchored under checkpoint `seq` counts; None = not anchored yet,
        which needs the key active now. Revocation voids what is anchored from revoked_at on, not the past."""
        return ids.key_valid_at(int(self.state), self.active_from, self.revoked_at, seq)


@dataclass(frozen=True)
class TxResult:
    tx_hash: bytes
    gas_used: int
    block_number: int


@dataclass(frozen=True)
class Party:
    account: str
    name: str


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    tree_size: int
    root: bytes
    cid: str
    timestamp: int


@dataclass(frozen=True)
class CheckpointEvent:
    sequence: int
    tree_size: int
    root: bytes
    cid: str
    block_number: int
    tx_hash: bytes


@dataclass(frozen=True)
class KeyEvent:
    kind: str  # "registered" | "revoked"
    enterprise_id: bytes  # zeros for cloud keys
    signer_id: bytes  # the device's, the gateway's or the cloud's chain id
    key_fingerprint: bytes
    sender: str
    block_number: int
    tx_hash: bytes


@dataclass(frozen=True)
class BindingEvent:
    kind: str  # "requested" | "confirmed" | "rejected" | "revoked"
    enterprise_id: bytes
    platform_id: bytes
    sender: str
    block_number: int


@dataclass(frozen=True)
class RegistryLink:
    """A registry's place in the chain of registries (registryLink()): the predecessor it succeeds (zeros for the
    first registry) with that one's final checkpoint, and the successor that sealed it (zeros while open)."""

    predecessor: str
    predecessor_checkpoint_count: int  # also the first sequence anchored on this registry
    predecessor_tree_size: int
    predecessor_commitment: bytes
    successor: str

    @property
    def has_predecessor(self) -> bool:
        return int(self.predecessor, 16) != 0

    @property
    def sealed(self) -> bool:
        return int(self.successor, 16) != 0


GENESIS_LINK_ARGS: tuple[str, int, int, bytes] = ("0x" + "00" * 20, 0, 0, bytes(32))


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


def load_artifact(path: Path) -> Artifact:
    data = json.loads(path.read_text())
    return Artifact(data["contractName"], data["abi"], data["bytecode"], data["deployedBytecode"])


def local_account(private_key: bytes | str) -> LocalKeySigner:
    """A signer for a production node that has no unlocked accounts."""
    return LocalKeySigner(private_key)


def _guard(action: Callable[[], T]) -> T:
    """Run one node interaction, turning transport failures into ChainUnavailable."""
    try:
        return action()
    except _UNREACHABLE as exc:
        raise ChainUnavailable(f"chain node unreachable: {exc}") from exc


class Chain:
    """A connection to one chain.

    `preflight_gas_limit`: when set, transactions are checked with one eth_call and then sent with this fixed gas
    limit instead of an estimate. Used for py-evm, whose gas estimate is a binary search running the transaction
    ~16 times; on a private in-process chain nothing can change state between the call and the send, and the
    receipt still reports the gas actually used.
    """

    def __init__(self, w3: Web3, preflight_gas_limit: int | None = None) -> None:
        self.w3 = w3
        self.preflight_gas_limit = preflight_gas_limit
        # The next nonce this process expects per signing address (to notice a dropped transaction).
        self._nonces: dict[str, int] = {}
        self._send_lock = threading.Lock()
        self._supports_1559: bool | None = None

    @property
    def accounts(self) -> list[str]:
        """Accounts the node has unlocked (empty on a production node)."""
        return [str(a) for a in _guard(lambda: self.w3.eth.accounts)]

    @property
    def chain_id(self) -> int:
        return int(_guard(lambda: self.w3.eth.chain_id))

    def block_number(self) -> int:
        return int(_guard(lambda: self.w3.eth.block_number))

    def receipt_block(self, tx_hash: bytes) -> int | None:
        """The block a transaction is mined in now, None if the node does not know it (not mined, reorged out)."""
        try:
            receipt = _guard(lambda: self.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        if receipt is None or receipt.get("blockNumber") is None or receipt["status"] != 1:
            return None
        return int(receipt["blockNumber"])

    def default_sender(self) -> str:
        accounts = self.accounts
        if not accounts:
            raise ChainError("the node has no unlocked accounts: pass a local_account(private_key)")
        return accounts[0]

    def send_value(self, sender: Sender, to: str, wei: int) -> TxResult:
        """Plain ether transfer (funding a local key's account in tests and demos)."""
        tx: TxParams = {"to": to_checksum_address(to), "value": Wei(wei)}
        return self._send(sender, tx)

    def balance(self, address: str) -> int:
        return int(_guard(lambda: self.w3.eth.get_balance(to_checksum_address(address))))

    def deploy(
        self, artifact: Artifact, sender: Sender | None = None, args: Sequence[Any] = ()
    ) -> tuple[str, TxResult]:
        """Deploy a contract; returns its address and the deploy transaction."""
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        sender = sender if sender is not None else self.default_sender()
        params: TxParams = {"from": _address(sender)}
        if self.preflight_gas_limit is not None:
            params["gas"] = self.preflight_gas_limit
        decode_error = _error_decoder(artifact.abi)
        try:  # a node estimates the gas first: a constructor that reverts (a wrong predecessor) reverts here
            tx = cast(TxParams, _guard(lambda: factory.constructor(*args).build_transaction(params)))
        except _REVERTED as exc:
            raise decode_error(exc) from exc
        result, receipt = self._send_with_receipt(sender, tx, decode_error)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError("deployment receipt has no contract address")
        return str(address), result

    def _send(self, sender: Sender, tx: TxParams) -> TxResult:
        return self._send_with_receipt(sender, tx, _error_decoder([]))[0]

    def _send_with_receipt(
        self, sender: Sender, tx: TxParams, decode_error: Callable[[BaseException], ContractReverted]
    ) -> tuple[TxResult, TxReceipt]:
        address = _address(sender)
        tx = {**tx, "from": address}
        try:
            local = not isinstance(sender, str)
            tx_hash = self._sign_and_send(sender, tx) if local else self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
        except _REVERTED as exc:
            raise decode_error(exc) from exc
        except _UNREACHABLE as exc:
            raise ChainUnavailable(f"chain node unreachable: {exc}") from exc
        if receipt["status"] != 1:
            # The call was run (estimate or preflight) before sending: only a state change in between gets here.
            raise ContractReverted("unknown", raw=receipt["transactionHash"].hex())
        result = TxResult(bytes(receipt["transactionHash"]), int(receipt["gasUsed"]), int(receipt["blockNumber"]))
        return result, receipt

    def _sign_and_send(self, signer: ChainSigner, tx: TxParams) -> HexBytes:
        """Fill gas, fees, nonce and chain id, sign locally, send raw.

        The nonce has one owner per process: sends are serialised by a lock and each takes the node's pending
        count, which already holds our previous send, so a failed send or a restart needs no repair. If another
        process sent with the same key in between (the node answers "nonce too low" or "already known"), the
        count is read again, up to NONCE_RETRIES times. A pending count below the next nonce this process used
        means the node dropped a transaction: logged, and the node's count is used (never a gap)."""
        w3 = self.w3
        address = _address(signer)
        if "gas" not in tx:
            tx["gas"] = w3.eth.estimate_gas(tx)
        tx["chainId"] = w3.eth.chain_id
        tx.update(self._fees())
        with self._send_lock:
            for attempt in range(NONCE_RETRIES):
                nonce = int(w3.eth.get_transaction_count(address, "pending"))
                expected = self._nonces.get(address)
                if expected is not None and nonce < expected:
                    logger.warning("node's pending nonce %d for %s is below %d: a sent transaction was dropped",
                                   nonce, address, expected)
                tx["nonce"] = Nonce(nonce)
                raw = signer.sign_transaction(cast(dict[str, Any], tx))
                try:
                    tx_hash = w3.eth.send_raw_transaction(raw)
                except Web3RPCError as exc:
                    message = str(exc).lower()
                    if any(m in message for m in _UNFUNDED):
                        raise OperatorUnfunded(
                            f"the account {address} cannot pay for gas: fund it (see README, production)"
                        ) from exc
                    if attempt + 1 < NONCE_RETRIES and any(m in message for m in _NONCE_RACE):
                        time.sleep(random.uniform(0, NONCE_RETRY_PAUSE_S * (attempt + 1)))
                        continue
                    raise
                self._nonces[address] = nonce + 1
                return tx_hash
        raise AssertionError("unreachable")  # pragma: no cover

    def _fees(self) -> TxParams:
        """EIP-1559 fees: maxFeePerGas = 2 × base fee + priority fee (room for the base fee to double); legacy
        gasPrice only when the node's blocks carry no base fee."""
        w3 = self.w3
        base = w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            return {"gasPrice": w3.eth.gas_price}
        try:
            tip = int(w3.eth.max_priority_fee)
        except (ValueError, NotImplementedError, MethodUnavailable):
            tip = DEFAULT_PRIORITY_FEE_WEI
        return {"maxPriorityFeePerGas": Wei(tip), "maxFeePerGas": Wei(2 * int(base) + tip)}


def connect_embedded(journal: Path | None = None) -> Chain:
    """An in-process EVM (eth-tester on py-evm) with funded unlocked accounts. Without `journal` its state lives
    in this process only; with it, the chain replays and keeps its history there (cloud/embedded_chain.py)."""
    if journal is None:
        return Chain(Web3(EthereumTesterProvider()), preflight_gas_limit=EMBEDDED_GAS_LIMIT)
    from cloud.embedded_chain import embedded_web3

    return Chain(embedded_web3(journal), preflight_gas_limit=EMBEDDED_GAS_LIMIT)


def connect_rpc(url: str, timeout_s: float = 10.0) -> Chain:
    """Any JSON-RPC node. Fails fast with ChainUnavailable if it does not answer: the caller owns retries."""
    provider = HTTPProvider(url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
    chain = Chain(Web3(provider))
    chain.chain_id  # noqa: B018 - probe the node now rather than on first use
    return chain


def _address(sender: Sender) -> ChecksumAddress:
    return to_checksum_address(sender if isinstance(sender, str) else sender.address)


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def _revert_data(exc: BaseException) -> bytes | None:
    """The raw revert payload (selector + ABI-encoded args) behind a failed call, if the node gave one.

    JSON-RPC nodes hand it to web3 as hex in `ContractLogicError.data`. eth-tester raises its own
    TransactionFailed carrying the bytes (transactions) or only their repr (calls), so look along the chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ContractLogicError):
            data = seen.data.get("data") if isinstance(seen.data, dict) else seen.data  # Hardhat: a dict
            if isinstance(data, str) and data.startswith("0x"):
                return bytes.fromhex(data[2:])
        first = seen.args[0] if seen.args else None
        if isinstance(first, bytes):
            return first
        if isinstance(first, str):
            text = first.removeprefix("execution reverted: ")
            if text.startswith(("b'", 'b"')):
                value = ast.literal_eval(text)  # a bytes literal only: literal_eval evaluates nothing else
                if isinstance(value, bytes):
                    return value
        seen = seen.__cause__ or seen.__context__
    return None


def _error_decoder(abi: Sequence[dict[str, Any]]) -> Callable[[BaseException], ContractReverted]:
    """Map 4-byte selectors of the ABI's custom errors to their names and argument types."""
    errors: dict[bytes, tuple[str, list[str]]] = {
        keccak(text="Error(string)")[:4]: ("Error", ["string"]),
        keccak(text="Panic(uint256)")[:4]: ("Panic", ["uint256"]),
    }
    for item in abi:
        if item.get("type") == "error":
            types = [_abi_type(p) for p in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            errors[selector] = (item["name"], types)

    def decode(exc: BaseException) -> ContractReverted:
        blob = _revert_data(exc)
        if blob is None or len(blob) < 4:
            return ContractReverted("unknown", (), str(exc))
        known = errors.get(blob[:4])
        if known is None:
            return ContractReverted("unknown", (), "0x" + blob.hex())
        name, types = known
        return ContractReverted(name, tuple(abi_decode(types, blob[4:])), "0x" + blob.hex())

    return decode


class _BoundContract:
    """A deployed contract plus the account that sends its transactions."""

    def __init__(self, chain: Chain, address: str, artifact: Artifact, sender: Sender | None = None) -> None:
        self.chain = chain
        self.address = to_checksum_address(address)
        self.artifact = artifact
        self.sender: Sender = sender if sender is not None else chain.default_sender()
        self.contract: Contract = chain.w3.eth.contract(address=self.address, abi=artifact.abi)
        self._decode_error = _error_decoder(artifact.abi)

    def _transact(self, function: ContractFunction) -> TxResult:
        params: TxParams = {"from": _address(self.sender)}
        try:
            if self.chain.preflight_gas_limit is not None:
                _guard(lambda: function.call(params))
                params["gas"] = self.chain.preflight_gas_limit
            tx = _guard(lambda: function.build_transaction(params))
        except _REVERTED as exc:
            raise self._decode_error(exc) from exc
        return self.chain._send_with_receipt(self.sender, tx, self._decode_error)[0]

    def _call(self, function: ContractFunction) -> Any:
        try:
            return _guard(lambda: function.call({"from": _address(self.sender)}))
        except _REVERTED as exc:
            raise self._decode_error(exc) from exc

    def _events(
        self, name: str, from_block: BlockIdentifier, to_block: BlockIdentifier, filters: dict[str, Any] | None
    ) -> list[EventData]:
        """Read in spans of at most LOG_SPAN_BLOCKS (what a capped endpoint such as the cloud's /rpc, or a public
        node, answers in one eth_getLogs) when both ends are known block numbers or tags."""
        event = self.contract.events[name]

        def get(start: BlockIdentifier, end: BlockIdentifier) -> list[EventData]:
            return list(_guard(lambda: event.get_logs(argument_filters=filters, from_block=start, to_block=end)))

        if isinstance(to_block, str) and to_block in ("latest", "safe", "finalized"):
            tag = to_block
            to_block = int(_guard(lambda: self.chain.w3.eth.get_block(tag)["number"]))
        if isinstance(from_block, str) and from_block == "earliest":
            from_block = 0
        if not isinstance(from_block, int) or not isinstance(to_block, int):
            return get(from_block, to_block)
        out: list[EventData] = []
        for start in range(from_block, to_block + 1, LOG_SPAN_BLOCKS):
            out.extend(get(start, min(to_block, start + LOG_SPAN_BLOCKS - 1)))
        return out


class RegistryContract(_BoundContract):
    """CarbonTraceRegistry: parties, bindings, signer keys (devices, gateways, the cloud), Merkle-log checkpoints."""

    def with_sender(self, sender: Sender) -> RegistryContract:
        return RegistryContract(self.chain, self.address, self.artifact, sender)

    # -- operator --
    def operator(self) -> str:
        return str(self._call(self.contract.functions.operator()))

    def pending_operator(self) -> str:
        return str(self._call(self.contract.functions.pendingOperator()))

    def transfer_operator(self, new_operator: str) -> TxResult:
        return self._transact(self.contract.functions.transferOperator(to_checksum_address(new_operator)))

    def accept_operator(self) -> TxResult:
        return self._transact(self.contract.functions.acceptOperator())

    # -- succession (docs/proof-bundle.md, "The chain of registries") --
    def registry_link(self) -> RegistryLink:
        predecessor, count, size, commitment, successor = self._call(self.contract.functions.registryLink())
        return RegistryLink(str(predecessor), int(count), int(size), bytes(commitment), str(successor))

    def deployed_at_block(self) -> int:
        return int(self._call(self.contract.functions.deployedAtBlock()))

    def seal_for(self, successor: str) -> TxResult:
        """Hand over to `successor` (which must record this registry's final checkpoint); no write works after."""
        return self._transact(self.contract.functions.sealFor(to_checksum_address(successor)))

    def import_binding(self, enterprise_id: bytes, platform_id: bytes, state: BindingState) -> TxResult:
        return self._transact(self.contract.functions.importBinding(enterprise_id, platform_id, int(state)))

    def import_key(self, enterprise_id: bytes, record: KeyRecord, fingerprint: bytes) -> TxResult:
        """Carry a key record from the predecessor with its history (before this registry's first anchor)."""
        fn = self.contract.functions.importKey(
            int(record.kind), enterprise_id, record.signer_id, fingerprint, int(record.state),
            record.active_from, record.revoked_at or 0,
        )
        return self._transact(fn)

    # -- parties --
    def register_enterprise(self, enterprise_id: bytes, account: str, name: str) -> TxResult:
        fn = self.contract.functions.registerEnterprise(enterprise_id, to_checksum_address(account), name)
        return self._transact(fn)

    def register_platform(self, platform_id: bytes, account: str, name: str) -> TxResult:
        fn = self.contract.functions.registerPlatform(platform_id, to_checksum_address(account), name)
        return self._transact(fn)

    def enterprise(self, enterprise_id: bytes) -> Party:
        account, name = self._call(self.contract.functions.enterprise(enterprise_id))
        return Party(str(account), str(name))

    def platform(self, platform_id: bytes) -> Party:
        account, name = self._call(self.contract.functions.platform(platform_id))
        return Party(str(account), str(name))

    # -- bindings --
    def request_binding(self, enterprise_id: bytes, platform_id: bytes) -> TxResult:
        return self._transact(self.contract.functions.requestBinding(enterprise_id, platform_id))

    def confirm_binding(self, enterprise_id: bytes, platform_id: bytes) -> TxResult:
        return self._transact(self.contract.functions.confirmBinding(enterprise_id, platform_id))

    def reject_binding(self, enterprise_id: bytes, platform_id: bytes) -> TxResult:
        return self._transact(self.contract.functions.rejectBinding(enterprise_id, platform_id))

    def unbind(self, enterprise_id: bytes, platform_id: bytes) -> TxResult:
        return self._transact(self.contract.functions.unbind(enterprise_id, platform_id))

    def request_binding_signed(self, enterprise_id: bytes, platform_id: bytes, signature: bytes) -> TxResult:
        """Relay the enterprise's EIP-712 consent (cloud/consent.py); the sender only pays the gas."""
        return self._transact(self.contract.functions.requestBindingSigned(enterprise_id, platform_id, signature))

    def confirm_binding_signed(self, enterprise_id: bytes, platform_id: bytes, signature: bytes) -> TxResult:
        return self._transact(self.contract.functions.confirmBindingSigned(enterprise_id, platform_id, signature))

    def reject_binding_signed(self, enterprise_id: bytes, platform_id: bytes, signature: bytes) -> TxResult:
        return self._transact(self.contract.functions.rejectBindingSigned(enterprise_id, platform_id, signature))

    def consent_nonce(self, account: str) -> int:
        """The nonce the account's next signed consent must carry."""
        return int(self._call(self.contract.functions.nonces(to_checksum_address(account))))

    def binding_state(self, enterprise_id: bytes, platform_id: bytes) -> BindingState:
        return BindingState(self._call(self.contract.functions.bindingState(enterprise_id, platform_id)))

    # -- signer keys (devices, gateways, the cloud) --
    def register_device_key(self, enterprise_id: bytes, device_id: bytes, fingerprint: bytes) -> TxResult:
        fn = self.contract.functions.registerDeviceKey(enterprise_id, device_id, fingerprint)
        return self._transact(fn)

    def revoke_device_key(self, enterprise_id: bytes, device_id: bytes, fingerprint: bytes) -> TxResult:
        return self._transact(self.contract.functions.revokeDeviceKey(enterprise_id, device_id, fingerprint))

    def register_gateway_key(self, enterprise_id: bytes, gateway_id: bytes, fingerprint: bytes) -> TxResult:
        fn = self.contract.functions.registerGatewayKey(enterprise_id, gateway_id, fingerprint)
        return self._transact(fn)

    def revoke_gateway_key(self, enterprise_id: bytes, gateway_id: bytes, fingerprint: bytes) -> TxResult:
        return self._transact(self.contract.functions.revokeGatewayKey(enterprise_id, gateway_id, fingerprint))

    def register_cloud_key(self, cloud_id: bytes, fingerprint: bytes) -> TxResult:
        return self._transact(self.contract.functions.registerCloudKey(cloud_id, fingerprint))

    def revoke_cloud_key(self, cloud_id: bytes, fingerprint: bytes) -> TxResult:
        return self._transact(self.contract.functions.revokeCloudKey(cloud_id, fingerprint))

    def device_key(self, device_id: bytes) -> tuple[bytes, bytes]:
        """(enterprise id, active key fingerprint); zeros when unknown / no active key."""
        enterprise_id, fingerprint = self._call(self.contract.functions.deviceKey(device_id))
        return bytes(enterprise_id), bytes(fingerprint)

    def gateway_key(self, gateway_id: bytes) -> tuple[bytes, bytes]:
        """(enterprise id, active key fingerprint); zeros when unknown / no active key."""
        enterprise_id, fingerprint = self._call(self.contract.functions.gatewayKey(gateway_id))
        return bytes(enterprise_id), bytes(fingerprint)

    def cloud_key(self, cloud_id: bytes) -> bytes:
        """The cloud id's active key fingerprint; zeros when none."""
        return bytes(self._call(self.contract.functions.cloudKey(cloud_id)))

    def key_state(self, fingerprint: bytes) -> KeyRecord:
        """Everything the chain says about a key fingerprint (KeyState.NONE with zeros when never registered)."""
        state, kind, signer_id, enterprise_id, active_from, revoked_at = self._call(
            self.contract.functions.keyState(fingerprint)
        )
        revoked = KeyState(state) == KeyState.REVOKED
        return KeyRecord(
            KeyState(state),
            SignerKind(kind),
            bytes(signer_id),
            bytes(enterprise_id),
            int(active_from),
            int(revoked_at) if revoked else None,
        )

    def signer_count(self, enterprise_id: bytes, kind: SignerKind) -> int:
        """How many device (or gateway) ids the enterprise ever registered a key for."""
        return int(self._call(self.contract.functions.signerCount(enterprise_id, int(kind))))

    def signer_at(self, enterprise_id: bytes, kind: SignerKind, index: int) -> bytes:
        return bytes(self._call(self.contract.functions.signerAt(enterprise_id, int(kind), index)))

    def signers_of(self, enterprise_id: bytes, kind: SignerKind) -> list[bytes]:
        """Every device (or gateway) id the enterprise ever registered, in first-registration order: the list a
        statement verifier checks for completeness."""
        return [self.signer_at(enterprise_id, kind, i) for i in range(self.signer_count(enterprise_id, kind))]

    # -- checkpoints --
    def anchor_checkpoint(self, tree_size: int, root: bytes, cid: str) -> TxResult:
        return self._transact(self.contract.functions.anchorCheckpoint(tree_size, root, cid))

    def checkpoint_count(self) -> int:
        return int(self._call(self.contract.functions.checkpointCount()))

    def checkpoint_commitment(self, index: int) -> bytes:
        """What the chain stores for checkpoint `index` (carbontrace_protocol.anchor_commitment)."""
        return bytes(self._call(self.contract.functions.checkpointCommitment(index)))

    def checkpoint(self, index: int, near_block: int | None = None) -> Checkpoint:
        """Checkpoint `index` as its event states it, once the event opens the stored commitment, with the
        timestamp of the block it was anchored in."""
        opened = self.opened_checkpoint(index, near_block)
        timestamp = self._block_time(opened.block_number)
        return Checkpoint(index, opened.tree_size, opened.root, opened.cid, timestamp)

    def opened_checkpoint(self, index: int, near_block: int | None = None) -> AnchoredFields:
        """The CheckpointAnchored event of checkpoint `index` that opens the commitment the chain stores.

        `near_block` (the block the caller saw the anchor mined in) narrows the log search to that block; when
        the event is not there (a reorg moved it), the whole chain is searched."""
        stored = self.checkpoint_commitment(index)
        spans: list[tuple[BlockIdentifier, BlockIdentifier]] = [(0, "latest")]
        if near_block is not None:
            spans.insert(0, (near_block, near_block))
        last_error: CommitmentMismatch | None = None
        for start, end in spans:
            events = [
                AnchoredFields.from_log(e) for e in self._events("CheckpointAnchored", start, end, {"sequence": index})
            ]
            try:
                return opened_checkpoint(index, stored, events)
            except CommitmentMismatch as err:
                last_error = err
        raise ChainError(str(last_error))

    def latest_tree_size(self) -> int:
        return int(self._call(self.contract.functions.latestTreeSize()))

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint, or None before the first anchor."""
        count = self.checkpoint_count()
        return None if count == 0 else self.checkpoint(count - 1)

    def _block_time(self, number: int) -> int:
        return int(_guard(lambda: self.chain.w3.eth.get_block(number))["timestamp"])

    # -- events --
    def checkpoint_events(
        self, from_block: BlockIdentifier = 0, to_block: BlockIdentifier = "latest"
    ) -> list[CheckpointEvent]:
        return [
            CheckpointEvent(
                int(e["args"]["sequence"]),
                int(e["args"]["treeSize"]),
                bytes(e["args"]["root"]),
                str(e["args"]["cid"]),
                int(e["blockNumber"]),
                bytes(e["transactionHash"]),
            )
            for e in self._events("CheckpointAnchored", from_block, to_block, None)
        ]

    def device_key_events(
        self, from_block: BlockIdentifier = 0, to_block: BlockIdentifier = "latest", device_id: bytes | None = None
    ) -> list[KeyEvent]:
        """Device key registrations and revocations in chain order: the device registry's audit trail."""
        return self._key_events("Device", "deviceId", from_block, to_block, device_id)

    def gateway_key_events(
        self, from_block: BlockIdentifier = 0, to_block: BlockIdentifier = "latest", gateway_id: bytes | None = None
    ) -> list[KeyEvent]:
        """Gateway key registrations and revocations in chain order."""
        return self._key_events("Gateway", "gatewayId", from_block, to_block, gateway_id)

    def cloud_key_events(
        self, from_block: BlockIdentifier = 0, to_block: BlockIdentifier = "latest", cloud_id: bytes | None = None
    ) -> list[KeyEvent]:
        """Cloud key registrations and revocations in chain order (enterprise_id is zeros: the cloud has none)."""
        return self._key_events("Cloud", "cloudId", from_block, to_block, cloud_id)

    def _key_events(
        self, signer: str, id_arg: str, from_block: BlockIdentifier, to_block: BlockIdentifier, signer_id: bytes | None
    ) -> list[KeyEvent]:
        filters = {id_arg: signer_id} if signer_id is not None else None
        logs = [("registered", e) for e in self._events(f"{signer}KeyRegistered", from_block, to_block, filters)]
        logs += [("revoked", e) for e in self._events(f"{signer}KeyRevoked", from_block, to_block, filters)]
        logs.sort(key=lambda pair: (pair[1]["blockNumber"], pair[1]["logIndex"]))
        return [
            KeyEvent(
                kind,
                bytes(e["args"].get("enterpriseId", bytes(32))),
                bytes(e["args"][id_arg]),
                bytes(e["args"]["keyFingerprint"]),
                str(e["args"]["sender"]),
                int(e["blockNumber"]),
                bytes(e["transactionHash"]),
            )
            for kind, e in logs
        ]

    def binding_events(
        self, from_block: BlockIdentifier = 0, to_block: BlockIdentifier = "latest"
    ) -> list[BindingEvent]:
        names = {
            "BindingRequested": "requested",
            "BindingConfirmed": "confirmed",
            "BindingRejected": "rejected",
            "BindingRevoked": "revoked",
        }
        logs = [(kind, e) for name, kind in names.items() for e in self._events(name, from_block, to_block, None)]
        logs.sort(key=lambda pair: (pair[1]["blockNumber"], pair[1]["logIndex"]))
        return [
            BindingEvent(
                kind,
                bytes(e["args"]["enterpriseId"]),
                bytes(e["args"]["platformId"]),
                str(e["args"]["sender"]),
                int(e["blockNumber"]),
            )
            for kind, e in logs
        ]


class NaiveHashStoreContract(_BoundContract):
    """The one-hash-per-transaction baseline, for gas comparisons only."""

    def store_hash(self, digest: bytes) -> TxResult:
        return self._transact(self.contract.functions.storeHash(digest))

    def stored_at(self, digest: bytes) -> int:
        """Block number at which the hash was stored, 0 if never."""
        return int(self._call(self.contract.functions.storedAt(digest)))


def deploy_registry(
    chain: Chain, sender: Sender | None = None, predecessor: RegistryContract | None = None
) -> tuple[RegistryContract, TxResult]:
    """Deploy CarbonTraceRegistry; the sender becomes the operator. With `predecessor`, the new registry succeeds
    it: it records the predecessor's final checkpoint as it is now (the constructor checks it) and continues its
    log; the predecessor still has to be sealed (RegistryContract.seal_for)."""
    artifact = load_artifact(REGISTRY_ARTIFACT)
    sender = sender if sender is not None else chain.default_sender()
    args: tuple[str, int, int, bytes] = GENESIS_LINK_ARGS
    if predecessor is not None:
        count = predecessor.checkpoint_count()
        last = predecessor.checkpoint_commitment(count - 1) if count else bytes(32)
        args = (to_checksum_address(predecessor.address), count, predecessor.latest_tree_size(), last)
    address, result = chain.deploy(artifact, sender, args)
    return RegistryContract(chain, address, artifact, sender), result


def deploy_naive_store(chain: Chain, sender: Sender | None = None) -> tuple[NaiveHashStoreContract, TxResult]:
    artifact = load_artifact(NAIVE_STORE_ARTIFACT)
    sender = sender if sender is not None else chain.default_sender()
    address, result = chain.deploy(artifact, sender)
    return NaiveHashStoreContract(chain, address, artifact, sender), result


def attach_registry(chain: Chain, address: str, sender: Sender | None = None) -> RegistryContract:
    """A registry deployed earlier (the cloud keeps its address in configuration)."""
    return RegistryContract(chain, address, load_artifact(REGISTRY_ARTIFACT), sender)
