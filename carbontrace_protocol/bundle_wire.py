"""The two encodings of a proof bundle: how its objects, byte strings and views are written in JSON and in CBOR.

The typed parts (carbontrace_protocol/proof_bundle.py) read and write every field through a ``Wire``, so both
encodings feed one typed constructor and keep every rule of it; only what differs lives here:

- an object: JSON names its fields; CBOR keys them by their position in the part's field tuple (0, 1, …: one
  byte each), so the tuples' order is the CBOR format (docs/proof-bundle.md, "CBOR encoding") and only grows;
- a byte string: JSON writes lowercase hex, CBOR a byte string;
- the registry address: JSON "0x" + 40 lowercase hex digits, CBOR 20 bytes;
- a view: JSON data in both (CBOR maps with text keys, integers, text, true/false/null, arrays). CBOR has no
  floats in our profile, so a view holding one (only a forged view can: views are computed from leaves, which
  hold none) has no CBOR form;
- a proof (a list of 32-byte Merkle hashes): JSON writes the hashes; CBOR writes indices into the bundle's one
  table of proof hashes (``ProofHashTable``), because the proofs of one bundle share nodes: an item's log
  inclusion proof and its checkpoint's consistency proofs run along the same tree, so at 10^7 leaves about a
  quarter of the hashes would otherwise be written twice.

A CBOR bundle is read as strictly as JSON: one item of deterministic CBOR (RFC 8949 §4.2.1), checked by
re-encoding the decoded value and comparing bytes, so a longer integer head, unsorted map keys or an
indefinite length is ``bundle_format``.
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from carbontrace_protocol import cbor
from carbontrace_protocol.errors import MalformedCBOR, ProtocolError

MAX_BUNDLE_BYTES = 256 * 1024 * 1024  # as strict_json's default: the same bound for either encoding
ADDRESS_SIZE = 20
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
HASH_SIZE = 32
MAX_PROOF_HASHES = 64  # in one proof: a tree of 2^64 leaves needs fewer


class BundleFormatError(ProtocolError):
    reason = "bundle_format"


def exact_fields(
    value: Any, what: str, fields: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The object, holding every name of ``fields``, any of ``optional`` and nothing else."""
    if not isinstance(value, dict):
        raise BundleFormatError(f"{what} must be an object")
    if not set(fields) <= set(value) <= set(fields) | set(optional):
        missing = sorted(set(fields) - set(value))
        unknown = sorted(set(value) - set(fields) - set(optional))
        also = f" and may have {list(optional)}" if optional else ""
        raise BundleFormatError(
            f"{what} must have exactly the fields {list(fields)}{also} (missing {missing}, unknown {unknown})"
        )
    return value


class Wire(ABC):
    """One encoding of the bundle's values; the typed parts call these for every object, byte string, address
    and view they read or write."""

    @abstractmethod
    def fields(
        self, value: Any, what: str, names: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The object's fields by name: every one of ``names``, any of ``optional`` (a field only some objects
        of the part carry; absent, not null, when not carried), none unknown. CBOR keys an optional field by
        its position after ``names``."""

    @abstractmethod
    def object(self, names: tuple[str, ...], values: dict[str, Any]) -> dict[Any, Any]:
        """The object of ``values`` (a subset of ``names``: an optional field left out is absent)."""

    @abstractmethod
    def read_bytes(self, value: Any, what: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, data: bytes) -> Any: ...

    @abstractmethod
    def read_address(self, value: Any, what: str) -> str:
        """The address as the typed bundle holds it: "0x" + 40 lowercase hex digits."""

    @abstractmethod
    def write_address(self, address: str) -> Any: ...

    @abstractmethod
    def read_proof(self, value: Any, what: str) -> tuple[bytes, ...]:
        """A proof: at most MAX_PROOF_HASHES hashes of 32 bytes."""

    @abstractmethod
    def write_proof(self, hashes: tuple[bytes, ...]) -> Any: ...

    def read_view(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BundleFormatError(f"{what} must be an object")
        return value

    def write_view(self, view: dict[str, Any]) -> Any:
        return view


def _proof_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise BundleFormatError(f"{what} must be a list of at most {MAX_PROOF_HASHES} hashes")
    return value


class JsonWire(Wire):
    def fields(
        self, value: Any, what: str, names: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        return exact_fields(value, what, names, optional)

    def object(self, names: tuple[str, ...], values: dict[str, Any]) -> dict[Any, Any]:
        return values

    def read_bytes(self, value: Any, what: str) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise BundleFormatError(f"{what} must be lowercase hex without 0x")
        return bytes.fromhex(value)

    def write_bytes(self, data: bytes) -> Any:
        return data.hex()

    def read_address(self, value: Any, what: str) -> str:
        if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
            raise BundleFormatError(f"{what} must be 0x followed by 40 lowercase hex digits")
        return value

    def write_address(self, address: str) -> Any:
        return address

    def read_proof(self, value: Any, what: str) -> tuple[bytes, ...]:
        hashes = tuple(self.read_bytes(v, what) for v in _proof_list(value, what))
        if any(len(h) != HASH_SIZE for h in hashes):
            raise BundleFormatError(f"{what} must be {HASH_SIZE} bytes")
        return hashes

    def write_proof(self, hashes: tuple[bytes, ...]) -> Any:
        return [h.hex() for h in hashes]


class ProofHashTable:
    """CBOR only: every distinct proof hash of one bundle, once, in ascending byte order (so a bundle has one
    table and one encoding); each proof is a list of indices into it, and every entry is used."""

    def __init__(self, hashes: list[bytes]) -> None:
        self.hashes = hashes
        self._index = {h: i for i, h in enumerate(hashes)}
        self._used: set[int] = set()

    @classmethod
    def of(cls, proofs: Iterable[tuple[bytes, ...]]) -> ProofHashTable:
        """The table of the hashes of ``proofs`` (a writer's)."""
        return cls(sorted({bytes(h) for proof in proofs for h in proof}))

    @classmethod
    def read(cls, value: Any, what: str) -> ProofHashTable:
        if not isinstance(value, list) or not all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in value):
            raise BundleFormatError(f"{what} must be a list of {HASH_SIZE}-byte byte strings")
        if any(a >= b for a, b in itertools.pairwise(value)):
            raise BundleFormatError(f"{what} must hold each hash once, in ascending byte order")
        return cls(list(value))

    def index(self, digest: bytes) -> int:
        return self._index[bytes(digest)]

    def digest(self, index: Any, what: str) -> bytes:
        if type(index) is not int or not 0 <= index < len(self.hashes):  # bool is not an index either
            raise BundleFormatError(f"{what} must hold indices into the bundle's {len(self.hashes)} proof hashes")
        self._used.add(index)
        return self.hashes[index]

    def check_all_used(self, what: str) -> None:
        if len(self._used) != len(self.hashes):
            raise BundleFormatError(f"{what} lists a hash no proof uses")


class CborWire(Wire):
    """The CBOR encoding of one bundle: its proofs are indices into the bundle's proof hash table."""

    def __init__(self, table: ProofHashTable) -> None:
        self.table = table

    def read_proof(self, value: Any, what: str) -> tuple[bytes, ...]:
        return tuple(self.table.digest(i, what) for i in _proof_list(value, what))

    def write_proof(self, hashes: tuple[bytes, ...]) -> Any:
        return [self.table.index(h) for h in hashes]

    def fields(
        self, value: Any, what: str, names: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BundleFormatError(f"{what} must be a map")
        every = names + optional
        keys = tuple(range(len(names)))
        if not all(type(k) is int for k in value):  # Python's True == 1: a key `true` must not pass for 1
            raise BundleFormatError(f"{what} must be keyed by unsigned integers")
        if not set(keys) <= set(value) <= set(range(len(every))):
            missing = [names[k] for k in keys if k not in value]
            unknown = sorted((k for k in value if k not in range(len(every))), key=repr)
            also = f" and may have {len(names)}-{len(every) - 1} {list(optional)}" if optional else ""
            raise BundleFormatError(
                f"{what} must have exactly the keys 0-{len(names) - 1} {list(names)}{also} (missing {missing}, "
                f"unknown {unknown})"
            )
        return {every[k]: v for k, v in value.items()}

    def object(self, names: tuple[str, ...], values: dict[str, Any]) -> dict[Any, Any]:
        return {names.index(name): v for name, v in values.items()}

    def read_bytes(self, value: Any, what: str) -> bytes:
        if not isinstance(value, bytes):
            raise BundleFormatError(f"{what} must be a CBOR byte string")
        return value

    def write_bytes(self, data: bytes) -> Any:
        return bytes(data)

    def read_address(self, value: Any, what: str) -> str:
        if not isinstance(value, bytes) or len(value) != ADDRESS_SIZE:
            raise BundleFormatError(f"{what} must be a byte string of {ADDRESS_SIZE} bytes")
        return "0x" + value.hex()

    def write_address(self, address: str) -> Any:
        return bytes.fromhex(address.removeprefix("0x"))

    def read_view(self, value: Any, what: str) -> dict[str, Any]:
        view = super().read_view(value, what)
        if not is_json_data(view):
            raise BundleFormatError(f"{what} must hold JSON data only (text keys, integers, text, true/false/null)")
        return view


def is_json_data(value: Any) -> bool:
    """Whether a decoded CBOR value is JSON's data model without numbers with a fraction: what a view may hold."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, list):
        return all(is_json_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_data(v) for k, v in value.items())
    return False


JSON = JsonWire()


def looks_like_cbor(data: bytes) -> bool:
    """Whether a document is a CBOR bundle rather than JSON text: a CBOR map head (0xa0-0xbf) is never the first
    byte of JSON text (not ASCII, and not even a UTF-8 lead byte)."""
    return len(data) > 0 and data[0] >> 5 == 5


def load_cbor(data: bytes) -> Any:
    """The one deterministic CBOR item ``data`` is, or BundleFormatError (bundle_format)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"document of {len(data)} bytes exceeds the limit of {MAX_BUNDLE_BYTES}")
    try:
        value = cbor.decode(data)
    except MalformedCBOR as err:
        raise BundleFormatError(f"not CBOR: {err}") from err
    try:
        canonical = cbor.encode(value)
    except ValueError as err:  # a float: not in our profile
        raise BundleFormatError(f"not CarbonTrace CBOR: {err}") from err
    if canonical != bytes(data):
        raise BundleFormatError("not deterministic CBOR (RFC 8949 §4.2.1): shortest heads, sorted map keys")
    return value


def dump_cbor(value: Any) -> bytes:
    try:
        return cbor.encode(value)
    except ValueError as err:  # a float in a view: it has no CBOR form
        raise BundleFormatError(f"this bundle has no CBOR form: {err}") from err
