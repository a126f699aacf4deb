"""Key custody for chain accounts: who signs the cloud's (and a party's) Ethereum transactions and typed data.

`ChainSigner` is the interface the chain client uses: an address, `sign_transaction(tx) -> raw bytes` and
`sign_typed_data(domain, types, message) -> 65-byte signature`. `LocalKeySigner` keeps a secp256k1 key in memory,
loaded from a 0600 file or an environment variable; an HSM or KMS signer implements the same three members.
The node is never asked to sign: a production node has no unlocked accounts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

from eth_account import Account
from eth_account.signers.local import LocalAccount

from carbontrace_host.secret_files import read_secret, write_secret

CHAIN_KEY_ENV = "CT_CLOUD_CHAIN_KEY"


@runtime_checkable
class ChainSigner(Protocol):
    @property
    def address(self) -> str:
        """The checksummed account address."""
        ...

    def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        """The signed raw transaction, ready for eth_sendRawTransaction."""
        ...

    def sign_typed_data(self, domain: dict[str, Any], types: dict[str, Any], message: dict[str, Any]) -> bytes:
        """An EIP-712 signature r ‖ s ‖ v (65 bytes, v in {27, 28})."""
        ...


class LocalKeySigner:
    """A key held in this process (from a file or the environment)."""

    def __init__(self, private_key: bytes | str) -> None:
        self._account: LocalAccount = cast(LocalAccount, Account.from_key(private_key))

    @classmethod
    def generate(cls) -> LocalKeySigner:
        return cls(secrets.token_bytes(32))

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        return bytes(self._account.sign_transaction(tx).raw_transaction)

    def sign_typed_data(self, domain: dict[str, Any], types: dict[str, Any], message: dict[str, Any]) -> bytes:
        signed = self._account.sign_typed_data(domain, types, message)
        return bytes(signed.signature)

    def private_key_hex(self) -> str:
        """For writing the key file once; never logged."""
        return bytes(self._account.key).hex()

    def __repr__(self) -> str:  # the key never appears in a log line or a traceback
        return f"LocalKeySigner({self.address})"


def sign_typed_document(signer: ChainSigner, document: dict[str, Any]) -> str:
    """Sign an eth_signTypedData_v4 document (what the cloud's consent endpoints serve); 0x-hex signature."""
    types = {k: v for k, v in document["types"].items() if k != "EIP712Domain"}
    message = {
        k: bytes.fromhex(v[2:]) if isinstance(v, str) and v.startswith("0x") else v
        for k, v in document["message"].items()
    }
    return "0x" + signer.sign_typed_data(document["domain"], types, message).hex()


def write_key_file(path: Path | str, signer: LocalKeySigner, *, exclusive: bool = True) -> Path:
    """Write the signer's key as hex to a 0600 file in a 0700 directory."""
    return write_secret(path, signer.private_key_hex() + "\n", exclusive=exclusive)


def load_key_file(path: Path | str) -> LocalKeySigner:
    text = read_secret(path, "chain key file").strip().removeprefix("0x")  # refused if wider than 0600
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"chain key file {path} does not hold hex") from exc
    if len(key) != 32:
        raise ValueError(f"chain key file {path} must hold 32 bytes of hex, not {len(key)}")
    return LocalKeySigner(key)


def load_or_create_key_file(path: Path | str, allow_create: bool) -> tuple[LocalKeySigner, bool]:
    """The key in ``path``; generated there (0600) if absent and allowed. Returns (signer, created)."""
    file = Path(path)
    if file.exists():
        return load_key_file(file), False
    if not allow_create:
        raise FileNotFoundError(f"chain key {file} is missing (create it with `carbontrace cloud bootstrap`)")
    signer = LocalKeySigner.generate()
    try:
        write_key_file(file, signer, exclusive=True)
    except FileExistsError:  # another worker created it first: use theirs
        return load_key_file(file), False
    return signer, True


def operator_signer(key_file: str, allow_create: bool) -> tuple[LocalKeySigner, bool]:
    """The cloud operator's chain key: CT_CLOUD_CHAIN_KEY (hex) when set, else the key file."""
    from_env = os.environ.get(CHAIN_KEY_ENV, "").strip()
    if from_env:
        return LocalKeySigner(bytes.fromhex(from_env.removeprefix("0x"))), False
    return load_or_create_key_file(key_file, allow_create)
