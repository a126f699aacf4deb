"""Typed parts of the proof bundle that the cloud writes and every verifier reads: the trust anchor and the query.

Strict: every object has exactly its fields (none missing, none unknown); integers are JSON integers (not
floats, not booleans); the registry address is "0x" + 40 lowercase hex digits. A bundle names no trust
anchor a verifier should believe: the chain id and registry address come from a ``Trust`` the verifier
pinned out of band (the cloud publishes it at GET /api/v1/trust), and the bundle's must equal it.
Byte-level rules and the meaning of each field: docs/proof-bundle.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from carbontrace_protocol import strict_json
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.views import DataType

TRUST_FORMAT = "carbontrace-trust"
TRUST_VERSION = 1
MAX_ID_LENGTH = 128
MAX_PROOF_HASHES = 64  # a tree of 2^64 leaves needs fewer
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


class BundleFormatError(ProtocolError):
    reason = "bundle_format"


# ---- strict field readers ------------------------------------------------------------------------------


def exact_fields(value: Any, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleFormatError(f"{what} must be an object")
    if set(value) != set(fields):
        missing = sorted(set(fields) - set(value))
        unknown = sorted(set(value) - set(fields))
        raise BundleFormatError(
            f"{what} must have exactly the fields {list(fields)} (missing {missing}, unknown {unknown})"
        )
    return value


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise BundleFormatError(f"{what} must be an unsigned 64-bit JSON integer")
    return value


def _opt_uint(value: Any, what: str) -> int | None:
    return None if value is None else _uint(value, what)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise BundleFormatError(f"{what} must be a string of 1-{MAX_ID_LENGTH} characters")
    return value


def _opt_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise BundleFormatError(f"{what} must be lowercase hex without 0x")
    data = bytes.fromhex(value)
    if size is not None and len(data) != size:
        raise BundleFormatError(f"{what} must be {size} bytes")
    if not data:
        raise BundleFormatError(f"{what} must not be empty")
    return data


def _hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise BundleFormatError(f"{what} must be a list of at most {MAX_PROOF_HASHES} hashes")
    return tuple(_hex(v, what, 32) for v in value)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleFormatError(f"{what} must be a list")
    return value


def normalize_address(address: str) -> str:
    """A registry address as the bundle and trust file write it: 0x + 40 lowercase hex digits."""
    lowered = address.lower()
    if not _ADDRESS.fullmatch(lowered):
        raise BundleFormatError(f"{address!r} is not a 20-byte address")
    return lowered


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise BundleFormatError(f"{what} must be 0x followed by 40 lowercase hex digits")
    return value


def _hex_list(values: tuple[bytes, ...]) -> list[str]:
    return [v.hex() for v in values]


# ---- the parts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """What a verifier pins once, out of band: which chain and which registry contract speak for CarbonTrace."""

    chain_id: int
    registry: str

    @classmethod
    def from_json(cls, value: Any) -> Trust:
        obj = exact_fields(value, "trust", ("format", "version", "chain_id", "registry"))
        if obj["format"] != TRUST_FORMAT or obj["version"] != TRUST_VERSION or isinstance(obj["version"], bool):
            raise BundleFormatError(f"not a {TRUST_FORMAT} v{TRUST_VERSION}")
        return cls(_uint(obj["chain_id"], "trust.chain_id"), _address(obj["registry"], "trust.registry"))

    @classmethod
    def from_text(cls, text: bytes | str) -> Trust:
        return cls.from_json(strict_json.loads(text, max_bytes=64 * 1024))

    def to_json(self) -> dict[str, Any]:
        return {"format": TRUST_FORMAT, "version": TRUST_VERSION, "chain_id": self.chain_id, "registry": self.registry}


@dataclass(frozen=True)
class Query:
    """The query the bundle answers; every item is checked against it (step query_match)."""

    enterprise_id: str | None
    site_id: str | None
    device_id: str | None
    start: int | None
    end: int | None
    types: frozenset[DataType]
    limit: int

    FIELDS = ("enterprise_id", "site_id", "device_id", "start", "end", "types", "limit")

    @classmethod
    def from_json(cls, value: Any) -> Query:
        obj = exact_fields(value, "query", cls.FIELDS)
        names = _list(obj["types"], "query.types")
        if not names or any(not isinstance(n, str) for n in names) or names != sorted(set(names)):
            raise BundleFormatError("query.types must be a non-empty sorted list of distinct type names")
        try:
            types = frozenset(DataType(n) for n in names)
        except ValueError as err:
            raise BundleFormatError(f"query.types: {err}") from err
        query = cls(
            _opt_text(obj["enterprise_id"], "query.enterprise_id"),
            _opt_text(obj["site_id"], "query.site_id"),
            _opt_text(obj["device_id"], "query.device_id"),
            _opt_uint(obj["start"], "query.start"),
            _opt_uint(obj["end"], "query.end"),
            types,
            _uint(obj["limit"], "query.limit"),
        )
        if query.start is not None and query.end is not None and query.start >= query.end:
            raise BundleFormatError("query.start must be before query.end")
        if query.limit == 0:
            raise BundleFormatError("query.limit must be at least 1")
        return query

    def to_json(self) -> dict[str, Any]:
        return {
            "enterprise_id": self.enterprise_id,
            "site_id": self.site_id,
            "device_id": self.device_id,
            "start": self.start,
            "end": self.end,
            "types": sorted(t.value for t in self.types),
            "limit": self.limit,
        }
