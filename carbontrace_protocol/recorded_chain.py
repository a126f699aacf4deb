"""A chain as recorded facts: the ChainReader of the conformance cases (docs/conformance/README.md).

``RecordedChain`` answers every read a verifier makes from a JSON document instead of a node;
``RecordingChain(inner)`` wraps a real reader and writes down every answer it gave, in that shape. The JSON
is strict, like every piece of evidence (exact fields, JSON integers, byte strings as lowercase hex without
0x):

    {"chain_id": 31337, "has_code": true, "checkpoint_count": 3,
     "checkpoints": [{"seq": 0, "tree_size": 2, "root": "<32 bytes>", "cid": "bafkrei…"}, …],
     "keys": [{"fingerprint": "<32 bytes>", "state": 1, "kind": 2, "signer_id": "<32 bytes>",
               "enterprise_id": "<32 bytes>", "active_from": 0, "revoked_at": null}, …],
     "signers": [{"enterprise_id": "<32 bytes>", "kind": 1, "signers": ["<32 bytes>", …]}, …]}

Two optional fields describe a chain of registries (docs/proof-bundle.md, "The chain of registries"): "link"
(the registry's registryLink(): {"predecessor": "0x…" or null, "predecessor_checkpoint_count": N,
"predecessor_tree_size": N, "predecessor_commitment": "<32 bytes>", "successor": "0x…" or null}; absent: no
predecessor, no successor) and, at the top level only, "registries": {"0x…": the recorded chain of another
registry on the same chain}, which ``at(address)`` answers from.

Lists are sorted (checkpoints by seq, keys by fingerprint, signers by enterprise then kind). A key the
recording does not list reads as state 0 (none: the registry's answer for an unknown fingerprint), so only
keys in state 1 (active) or 2 (revoked) are written; ``revoked_at`` is an integer exactly when the state is 2.
A checkpoint, or an enterprise's signer list, the recording does not hold is an error, not a guess.
"""

from __future__ import annotations

from typing import Any

from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.ids import FINGERPRINT_SIZE, KEY_ACTIVE, KEY_NONE, KEY_REVOKED, SIGNER_KIND_NAMES
from carbontrace_protocol.proof_bundle import BundleFormatError, exact_fields
from carbontrace_protocol.proof_verify import ChainCheckpoint, ChainKey, ChainReader
from carbontrace_protocol.registry_chain import GENESIS, RegistryLink

FIELDS = ("chain_id", "has_code", "checkpoint_count", "checkpoints", "keys", "signers")
CHECKPOINT_FIELDS = ("seq", "tree_size", "root", "cid")
KEY_FIELDS = ("fingerprint", "state", "kind", "signer_id", "enterprise_id", "active_from", "revoked_at")
SIGNERS_FIELDS = ("enterprise_id", "kind", "signers")
OPTIONAL_FIELDS = ("link", "registries")
LINK_FIELDS = (
    "predecessor", "predecessor_checkpoint_count", "predecessor_tree_size", "predecessor_commitment", "successor"
)
_ZERO = bytes(32)


class MalformedRecordedChain(ProtocolError):
    reason = "malformed_recorded_chain"


class NotRecorded(ProtocolError):
    """The verifier asked for a fact the recording does not hold."""

    reason = "not_recorded"


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise MalformedRecordedChain(f"{what} must be an unsigned 64-bit JSON integer")
    return value


def _bytes32(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * FINGERPRINT_SIZE or value != value.lower():
        raise MalformedRecordedChain(f"{what} must be 64 lowercase hex digits without 0x")
    try:
        return bytes.fromhex(value)
    except ValueError as err:
        raise MalformedRecordedChain(f"{what} must be 64 lowercase hex digits without 0x") from err


def _fields(value: Any, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    try:
        return exact_fields(value, what, fields)
    except BundleFormatError as err:
        raise MalformedRecordedChain(str(err)) from err


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedRecordedChain(f"{what} must be a list")
    return value


def _sorted(keys: list[Any], what: str) -> None:
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise MalformedRecordedChain(f"{what} must be sorted and without repeats")


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x") or value != value.lower():
        raise MalformedRecordedChain(f"{what} must be 0x and 40 lowercase hex digits")
    try:
        bytes.fromhex(value[2:])
    except ValueError as err:
        raise MalformedRecordedChain(f"{what} must be 0x and 40 lowercase hex digits") from err
    return value


def _link(value: Any) -> RegistryLink:
    row = _fields(value, "link", LINK_FIELDS)
    ends = [None if row[k] is None else _address(row[k], f"link {k}") for k in ("predecessor", "successor")]
    return RegistryLink(
        ends[0],
        _uint(row["predecessor_checkpoint_count"], "link predecessor_checkpoint_count"),
        _uint(row["predecessor_tree_size"], "link predecessor_tree_size"),
        _bytes32(row["predecessor_commitment"], "link predecessor_commitment"),
        ends[1],
    )


class RecordedChain:
    """A ChainReader over recorded facts."""

    def __init__(
        self,
        chain_id: int,
        has_code: bool,
        checkpoint_count: int,
        checkpoints: dict[int, ChainCheckpoint],
        keys: dict[bytes, ChainKey],
        signers: dict[tuple[bytes, int], list[bytes]],
        link: RegistryLink = GENESIS,
        registries: dict[str, RecordedChain] | None = None,
    ) -> None:
        self.link_record = link
        self.registries = registries if registries is not None else {}
        self._chain_id = chain_id
        self._has_code = has_code
        self._count = checkpoint_count
        self.checkpoints = dict(checkpoints)
        self.keys = dict(keys)
        self.signers = {k: list(v) for k, v in signers.items()}

    # -- ChainReader --
    def chain_id(self) -> int:
        return self._chain_id

    def has_code(self) -> bool:
        return self._has_code

    def checkpoint_count(self) -> int:
        return self._count

    def checkpoint(self, seq: int) -> ChainCheckpoint:
        try:
            return self.checkpoints[seq]
        except KeyError:
            raise NotRecorded(f"checkpoint {seq} is not in the recording") from None

    def key(self, fingerprint: bytes) -> ChainKey:
        return self.keys.get(bytes(fingerprint)) or ChainKey(KEY_NONE, 0, _ZERO, _ZERO, 0, None)

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        try:
            return list(self.signers[(bytes(enterprise_id), kind)])
        except KeyError:
            raise NotRecorded(
                f"the {SIGNER_KIND_NAMES.get(kind, kind)} list of an enterprise is not recorded"
            ) from None

    def link(self) -> RegistryLink:
        return self.link_record

    def at(self, registry: str) -> RecordedChain:
        try:
            return self.registries[registry]
        except KeyError:
            raise NotRecorded(f"registry {registry} is not in the recording") from None

    # -- JSON --
    @classmethod
    def from_json(cls, value: Any, top: bool = True) -> RecordedChain:
        present = tuple(k for k in OPTIONAL_FIELDS if isinstance(value, dict) and k in value)
        if "registries" in present and not top:
            raise MalformedRecordedChain("only the top-level recorded chain lists other registries")
        obj = _fields(value, "recorded chain", FIELDS + present)
        link = _link(obj["link"]) if "link" in obj else GENESIS
        registries: dict[str, RecordedChain] = {}
        for address, other in (obj.get("registries") or {}).items():
            registries[_address(address, "registries key")] = cls.from_json(other, top=False)
        if not isinstance(obj["has_code"], bool):
            raise MalformedRecordedChain("has_code must be true or false")
        checkpoints: dict[int, ChainCheckpoint] = {}
        for entry in _list(obj["checkpoints"], "checkpoints"):
            row = _fields(entry, "checkpoint", CHECKPOINT_FIELDS)
            if not isinstance(row["cid"], str) or not row["cid"]:
                raise MalformedRecordedChain("checkpoint cid must be a non-empty string")
            seq = _uint(row["seq"], "checkpoint seq")
            checkpoints[seq] = ChainCheckpoint(
                _uint(row["tree_size"], "checkpoint tree_size"), _bytes32(row["root"], "checkpoint root"), row["cid"]
            )
        _sorted([_uint(e["seq"], "seq") for e in obj["checkpoints"]], "checkpoints")
        keys: dict[bytes, ChainKey] = {}
        for entry in _list(obj["keys"], "keys"):
            row = _fields(entry, "key", KEY_FIELDS)
            state = _uint(row["state"], "key state")
            if state not in (KEY_ACTIVE, KEY_REVOKED):
                raise MalformedRecordedChain("a recorded key is active (1) or revoked (2); unlisted keys read as 0")
            kind = _uint(row["kind"], "key kind")
            if kind not in SIGNER_KIND_NAMES:
                raise MalformedRecordedChain(f"key kind must be one of {sorted(SIGNER_KIND_NAMES)}")
            revoked_at = row["revoked_at"]
            if (state == KEY_REVOKED) != (revoked_at is not None):
                raise MalformedRecordedChain("revoked_at is an integer exactly when the key is revoked")
            keys[_bytes32(row["fingerprint"], "key fingerprint")] = ChainKey(
                state,
                kind,
                _bytes32(row["signer_id"], "key signer_id"),
                _bytes32(row["enterprise_id"], "key enterprise_id"),
                _uint(row["active_from"], "key active_from"),
                None if revoked_at is None else _uint(revoked_at, "key revoked_at"),
            )
        _sorted([e["fingerprint"] for e in obj["keys"]], "keys")
        signers: dict[tuple[bytes, int], list[bytes]] = {}
        for entry in _list(obj["signers"], "signers"):
            row = _fields(entry, "signers", SIGNERS_FIELDS)
            kind = _uint(row["kind"], "signers kind")
            ids = [_bytes32(s, "signer id") for s in _list(row["signers"], "signers")]
            signers[(_bytes32(row["enterprise_id"], "signers enterprise_id"), kind)] = ids
        _sorted([(e["enterprise_id"], e["kind"]) for e in obj["signers"]], "signers")
        chain = cls(
            _uint(obj["chain_id"], "chain_id"),
            obj["has_code"],
            _uint(obj["checkpoint_count"], "checkpoint_count"),
            checkpoints,
            keys,
            signers,
            link,
            registries,
        )
        for other in registries.values():
            other.registries = registries  # one map: a predecessor's reader finds the others too
        return chain

    def to_json(self, top: bool = True) -> dict[str, Any]:
        out = self._to_json()
        if self.link_record != GENESIS:
            out["link"] = {
                "predecessor": self.link_record.predecessor,
                "predecessor_checkpoint_count": self.link_record.predecessor_checkpoint_count,
                "predecessor_tree_size": self.link_record.predecessor_tree_size,
                "predecessor_commitment": self.link_record.predecessor_commitment.hex(),
                "successor": self.link_record.successor,
            }
        if top and self.registries:
            out["registries"] = {a: c.to_json(top=False) for a, c in sorted(self.registries.items())}
        return out

    def _to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self._chain_id,
            "has_code": self._has_code,
            "checkpoint_count": self._count,
            "checkpoints": [
                {"seq": seq, "tree_size": c.tree_size, "root": c.root.hex(), "cid": c.cid}
                for seq, c in sorted(self.checkpoints.items())
            ],
            "keys": [
                {
                    "fingerprint": fp.hex(),
                    "state": k.state,
                    "kind": k.kind,
                    "signer_id": k.signer_id.hex(),
                    "enterprise_id": k.enterprise_id.hex(),
                    "active_from": k.active_from,
                    "revoked_at": k.revoked_at if k.state == KEY_REVOKED else None,
                }
                for fp, k in sorted(self.keys.items())
                if k.state != KEY_NONE
            ],
            "signers": [
                {"enterprise_id": enterprise.hex(), "kind": kind, "signers": [s.hex() for s in ids]}
                for (enterprise, kind), ids in sorted(self.signers.items())
            ],
        }


class RecordingChain:
    """A ChainReader that passes every read to ``inner`` and records the answer (``recorded()``)."""

    def __init__(self, inner: ChainReader) -> None:
        self.inner = inner
        self._chain_id: int | None = None
        self._has_code: bool | None = None
        self._count: int | None = None
        self._checkpoints: dict[int, ChainCheckpoint] = {}
        self._keys: dict[bytes, ChainKey] = {}
        self._signers: dict[tuple[bytes, int], list[bytes]] = {}

    def chain_id(self) -> int:
        self._chain_id = self.inner.chain_id()
        return self._chain_id

    def has_code(self) -> bool:
        self._has_code = self.inner.has_code()
        return self._has_code

    def checkpoint_count(self) -> int:
        self._count = self.inner.checkpoint_count()
        return self._count

    def checkpoint(self, seq: int) -> ChainCheckpoint:
        self._checkpoints[seq] = self.inner.checkpoint(seq)
        return self._checkpoints[seq]

    def key(self, fingerprint: bytes) -> ChainKey:
        self._keys[bytes(fingerprint)] = self.inner.key(fingerprint)
        return self._keys[bytes(fingerprint)]

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        self._signers[(bytes(enterprise_id), kind)] = list(self.inner.signers_of(enterprise_id, kind))
        return list(self._signers[(bytes(enterprise_id), kind)])

    def recorded(self) -> RecordedChain:
        """What was read; a fact never read is recorded as the inner reader states it now (chain id, code,
        checkpoint count are cheap and every case's file then has the same shape)."""
        return RecordedChain(
            self._chain_id if self._chain_id is not None else self.inner.chain_id(),
            self._has_code if self._has_code is not None else self.inner.has_code(),
            self._count if self._count is not None else self.inner.checkpoint_count(),
            self._checkpoints,
            self._keys,
            self._signers,
        )
