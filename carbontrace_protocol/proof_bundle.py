"""The proof bundle, version 3, and the trust file: one typed definition for the writer and every checker.

``ProofBundle.from_json`` (or ``from_cbor``, the compact encoding of the same fields) parses once, strictly,
and raises ``BundleFormatError``; everything after works on typed values. Both encodings go through the same
readers and constructors below, which take a ``bundle_wire.Wire`` for the little that differs (how an object,
a byte string, the address and a view are written). Strict means: every object has exactly its fields (none
missing, none unknown); integers are integers (not floats, not booleans); byte strings are lowercase hex without
0x (CBOR: byte strings) of the stated length; the registry address is "0x" + 40 lowercase hex digits (CBOR: 20
bytes); every reference (a batch, a key, a checkpoint) resolves and every key and checkpoint listed is used.
Byte-level rules and the meaning of each field: docs/proof-bundle.md. The bundle names no trust anchor a
verifier should believe: the chain id and registry address come from a ``Trust`` the verifier pinned out of
band, and the bundle's must equal it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from carbontrace_protocol import bundle_wire, strict_json
from carbontrace_protocol.bundle_wire import JSON, Wire

# read from here by the other documents' parsers (statement.py, statement_summary.py, recorded_chain.py)
from carbontrace_protocol.bundle_wire import BundleFormatError as BundleFormatError
from carbontrace_protocol.bundle_wire import exact_fields as exact_fields
from carbontrace_protocol.ids import FINGERPRINT_SIZE, PUBLIC_KEY_SIZE, key_fingerprint
from carbontrace_protocol.views import KIND_AGGREGATE, KIND_FLUX, KIND_READING, DataType

# what an item or a retrieval failure may be; a reading and a flux are device-signed, so their items name the key
ITEM_KINDS = (KIND_READING, KIND_AGGREGATE, KIND_FLUX)
DEVICE_SIGNED_KINDS = (KIND_READING, KIND_FLUX)

BUNDLE_FORMAT = "carbontrace-proof-bundle"
BUNDLE_VERSION = 3  # 3: items carry the openings of the aggregate fields they disclose
TRUST_FORMAT = "carbontrace-trust"
TRUST_VERSION = 1
KEY_KINDS = ("device", "gateway", "cloud")
MAX_ID_LENGTH = 128
# the failed_step of a leaf the cloud withheld from the bundle's caller: its format would show in clear a field
# the caller may not see (a format 1 aggregate's CO2 to the public); counted, never carried
WITHHELD_STEP = "withheld"


# ---- strict field readers ------------------------------------------------------------------------------


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise BundleFormatError(f"{what} must be an unsigned 64-bit integer (not a float, not a boolean)")
    return value


def _opt_uint(value: Any, what: str) -> int | None:
    return None if value is None else _uint(value, what)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise BundleFormatError(f"{what} must be a string of 1-{MAX_ID_LENGTH} characters")
    return value


def _opt_text(value: Any, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _bytes(wire: Wire, value: Any, what: str, size: int | None = None) -> bytes:
    data = wire.read_bytes(value, what)
    if size is not None and len(data) != size:
        raise BundleFormatError(f"{what} must be {size} bytes")
    if not data:
        raise BundleFormatError(f"{what} must not be empty")
    return data


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleFormatError(f"{what} must be a list")
    return value


def normalize_address(address: str) -> str:
    """A registry address as the bundle and trust file write it: 0x + 40 lowercase hex digits."""
    lowered = address.lower()
    try:
        return JSON.read_address(lowered, "address")
    except BundleFormatError:
        raise BundleFormatError(f"{address!r} is not a 20-byte address") from None


# ---- the parts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """What a verifier pins once, out of band: which chain and which registry contract speak for CarbonTrace."""

    chain_id: int
    registry: str

    @classmethod
    def from_json(cls, value: Any) -> Trust:
        obj = exact_fields(value, "trust", ("format", "version", "chain_id", "registry"))
        if obj["format"] != TRUST_FORMAT or type(obj["version"]) is not int or obj["version"] != TRUST_VERSION:
            raise BundleFormatError(f"not a {TRUST_FORMAT} v{TRUST_VERSION}")
        return cls(_uint(obj["chain_id"], "trust.chain_id"), JSON.read_address(obj["registry"], "trust.registry"))

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
    def read(cls, value: Any, wire: Wire) -> Query:
        obj = wire.fields(value, "query", cls.FIELDS)
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
        return self.write(JSON)

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS,
            {
                "enterprise_id": self.enterprise_id,
                "site_id": self.site_id,
                "device_id": self.device_id,
                "start": self.start,
                "end": self.end,
                "types": sorted(t.value for t in self.types),
                "limit": self.limit,
            },
        )


@dataclass(frozen=True)
class NewestAnchor:
    seq: int
    tree_size: int
    root: bytes

    FIELDS = ("seq", "tree_size", "root")

    @classmethod
    def read(cls, value: Any, wire: Wire) -> NewestAnchor:
        obj = wire.fields(value, "newest", cls.FIELDS)
        return cls(
            _uint(obj["seq"], "newest.seq"),
            _uint(obj["tree_size"], "newest.tree_size"),
            _bytes(wire, obj["root"], "newest.root", 32),
        )

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS, {"seq": self.seq, "tree_size": self.tree_size, "root": wire.write_bytes(self.root)}
        )


@dataclass(frozen=True)
class KeyEntry:
    """A public key and whose it claims to be; only the chain's keyState makes the claim true."""

    kind: str  # device | gateway | cloud
    signer: str
    public_key: bytes

    @property
    def fingerprint(self) -> bytes:
        return key_fingerprint(self.public_key)

    FIELDS = ("kind", "signer", "public_key")

    @classmethod
    def read(cls, value: Any, wire: Wire) -> KeyEntry:
        obj = wire.fields(value, "key", cls.FIELDS)
        if obj["kind"] not in KEY_KINDS:
            raise BundleFormatError(f"key kind must be one of {list(KEY_KINDS)}")
        public_key = _bytes(wire, obj["public_key"], "key public_key", PUBLIC_KEY_SIZE)
        if public_key[0] != 4:
            raise BundleFormatError("key public_key must be uncompressed SEC1 (0x04 || x || y)")
        return cls(obj["kind"], _text(obj["signer"], "key signer"), public_key)

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS, {"kind": self.kind, "signer": self.signer, "public_key": wire.write_bytes(self.public_key)}
        )


@dataclass(frozen=True)
class CheckpointEntry:
    seq: int
    signed: bytes  # COSE_Sign1 of the checkpoint (carbontrace_protocol.checkpoint)
    cid: str  # CID of the checkpoint blob in the content store; must equal the chain's checkpoint(seq).cid
    consistency_from_previous: tuple[bytes, ...]
    consistency_to_newest: tuple[bytes, ...]

    FIELDS = ("seq", "signed", "cid", "consistency_from_previous", "consistency_to_newest")

    @classmethod
    def read(cls, value: Any, wire: Wire) -> CheckpointEntry:
        obj = wire.fields(value, "checkpoint", cls.FIELDS)
        return cls(
            _uint(obj["seq"], "checkpoint.seq"),
            _bytes(wire, obj["signed"], "checkpoint.signed"),
            _text(obj["cid"], "checkpoint.cid"),
            wire.read_proof(obj["consistency_from_previous"], "consistency_from_previous"),
            wire.read_proof(obj["consistency_to_newest"], "consistency_to_newest"),
        )

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS,
            {
                "seq": self.seq,
                "signed": wire.write_bytes(self.signed),
                "cid": self.cid,
                "consistency_from_previous": wire.write_proof(self.consistency_from_previous),
                "consistency_to_newest": wire.write_proof(self.consistency_to_newest),
            },
        )


@dataclass(frozen=True)
class BatchEntry:
    batch_id: str  # must be "<gateway>/<batch_seq>" of the signed header
    signed_header: bytes  # the gateway's COSE_Sign1 batch header, which is the log leaf
    gateway_key: bytes  # fingerprint of the key (in keys) that signed the header
    log_index: int
    checkpoint_seq: int | None  # the first anchored checkpoint whose tree holds log_index; None: pending
    log_proof: tuple[bytes, ...]

    FIELDS = ("batch_id", "signed_header", "gateway_key", "log_index", "checkpoint_seq", "log_proof")

    @classmethod
    def read(cls, value: Any, wire: Wire) -> BatchEntry:
        obj = wire.fields(value, "batch", cls.FIELDS)
        entry = cls(
            _text(obj["batch_id"], "batch.batch_id"),
            _bytes(wire, obj["signed_header"], "batch.signed_header"),
            _bytes(wire, obj["gateway_key"], "batch.gateway_key", FINGERPRINT_SIZE),
            _uint(obj["log_index"], "batch.log_index"),
            _opt_uint(obj["checkpoint_seq"], "batch.checkpoint_seq"),
            wire.read_proof(obj["log_proof"], "batch.log_proof"),
        )
        if entry.checkpoint_seq is None and entry.log_proof:
            raise BundleFormatError("a pending batch carries no log proof")
        return entry

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS,
            {
                "batch_id": self.batch_id,
                "signed_header": wire.write_bytes(self.signed_header),
                "gateway_key": wire.write_bytes(self.gateway_key),
                "log_index": self.log_index,
                "checkpoint_seq": self.checkpoint_seq,
                "log_proof": wire.write_proof(self.log_proof),
            },
        )


@dataclass(frozen=True)
class ItemEntry:
    kind: str  # reading | aggregate
    batch_id: str
    leaf_index: int
    device_id: str  # the reading's device, or the aggregate's "device"
    device_key: bytes | None  # fingerprint of the device key (readings); None for aggregates
    leaf: bytes
    batch_proof: tuple[bytes, ...]
    view: dict[str, Any]  # views.view(kind, decoded leaf, query.types), exactly
    # (field name, CBOR [salt, value]) of each field of a committed aggregate leaf that the query's types
    # disclose (views.fields_to_open), sorted by name; none for a reading
    openings: tuple[tuple[str, bytes], ...] = ()
    # a re-timed reading only (an unsynced format-2 reading, no time of its own): the device-signed COSE_Sign1
    # of the first synced reading of the same device and boot, from which the verifier re-derives its time
    # (carbontrace_protocol/retime.py); the field is absent on every other item
    retime_reference: bytes | None = None

    FIELDS = ("kind", "batch_id", "leaf_index", "device_id", "device_key", "leaf", "batch_proof", "view", "openings")
    # optional, so bundles without a re-timed reading are what they were; CBOR key 9
    OPTIONAL = ("retime_reference",)

    def opening_map(self) -> dict[str, bytes]:
        return dict(self.openings)

    @classmethod
    def read(cls, value: Any, wire: Wire) -> ItemEntry:
        obj = wire.fields(value, "item", cls.FIELDS, cls.OPTIONAL)
        kind = obj["kind"]
        if kind not in ITEM_KINDS:
            raise BundleFormatError("item kind must be reading, aggregate or flux")
        device_key = (
            None if obj["device_key"] is None else _bytes(wire, obj["device_key"], "item.device_key", FINGERPRINT_SIZE)
        )
        if (kind in DEVICE_SIGNED_KINDS) != (device_key is not None):
            raise BundleFormatError("a reading or flux item names its device key; an aggregate item names none")
        view = wire.read_view(obj["view"], "item.view")
        openings = obj["openings"]
        if not isinstance(openings, dict) or not all(isinstance(k, str) and k for k in openings):
            raise BundleFormatError("item.openings must be an object keyed by field name")
        if kind in DEVICE_SIGNED_KINDS and openings:
            raise BundleFormatError("a reading or flux item opens no fields")
        reference = None
        if "retime_reference" in obj:  # absent, never null, on an item that is not re-timed
            if kind != KIND_READING:
                raise BundleFormatError("only a reading item carries a retime_reference")
            if obj["retime_reference"] is None:
                raise BundleFormatError("item.retime_reference is absent, not null, on an item that is not re-timed")
            reference = _bytes(wire, obj["retime_reference"], "item.retime_reference")
        return cls(
            kind,
            _text(obj["batch_id"], "item.batch_id"),
            _uint(obj["leaf_index"], "item.leaf_index"),
            _text(obj["device_id"], "item.device_id"),
            device_key,
            _bytes(wire, obj["leaf"], "item.leaf"),
            wire.read_proof(obj["batch_proof"], "item.batch_proof"),
            view,
            tuple((name, _bytes(wire, openings[name], f"item.openings.{name}")) for name in sorted(openings)),
            reference,
        )

    def write(self, wire: Wire) -> dict[Any, Any]:
        retimed = {} if self.retime_reference is None else {"retime_reference": wire.write_bytes(self.retime_reference)}
        return wire.object(
            self.FIELDS + self.OPTIONAL,
            {
                "kind": self.kind,
                "batch_id": self.batch_id,
                "leaf_index": self.leaf_index,
                "device_id": self.device_id,
                "device_key": None if self.device_key is None else wire.write_bytes(self.device_key),
                "leaf": wire.write_bytes(self.leaf),
                "batch_proof": wire.write_proof(self.batch_proof),
                "view": wire.write_view(self.view),
                "openings": {name: wire.write_bytes(opening) for name, opening in self.openings},
                **retimed,
            },
        )


@dataclass(frozen=True)
class RetrievalFailure:
    """A leaf the answer should hold but the cloud could not prove: the answer is incomplete, never valid."""

    kind: str
    batch_id: str
    leaf_index: int
    device_id: str
    failed_step: str

    FIELDS = ("kind", "batch_id", "leaf_index", "device_id", "failed_step")

    @classmethod
    def read(cls, value: Any, wire: Wire) -> RetrievalFailure:
        obj = wire.fields(value, "retrieval failure", cls.FIELDS)
        if obj["kind"] not in ITEM_KINDS:
            raise BundleFormatError("retrieval failure kind must be reading, aggregate or flux")
        return cls(
            obj["kind"],
            _text(obj["batch_id"], "retrieval failure batch_id"),
            _uint(obj["leaf_index"], "retrieval failure leaf_index"),
            _text(obj["device_id"], "retrieval failure device_id"),
            _text(obj["failed_step"], "retrieval failure failed_step"),
        )

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS,
            {
                "kind": self.kind,
                "batch_id": self.batch_id,
                "leaf_index": self.leaf_index,
                "device_id": self.device_id,
                "failed_step": self.failed_step,
            },
        )


# ---- the bundle ------------------------------------------------------------------------------------------


def proofs_of(
    checkpoints: Iterable[CheckpointEntry], batches: Iterable[BatchEntry], items: Iterable[ItemEntry]
) -> list[tuple[bytes, ...]]:
    """The proofs these parts hold, in document order: what a CBOR bundle's proof hash table is made of."""
    out: list[tuple[bytes, ...]] = []
    for c in checkpoints:
        out += [c.consistency_from_previous, c.consistency_to_newest]
    out += [b.log_proof for b in batches]
    out += [i.batch_proof for i in items]
    return out


@dataclass(frozen=True)
class ProofBundle:
    chain_id: int
    registry: str
    query: Query
    newest: NewestAnchor | None
    keys: tuple[KeyEntry, ...]
    checkpoints: tuple[CheckpointEntry, ...]
    batches: tuple[BatchEntry, ...]
    items: tuple[ItemEntry, ...]
    retrieval_failures: tuple[RetrievalFailure, ...]

    # the order of every FIELDS tuple is the CBOR encoding's keys (bundle_wire): append, never reorder
    FIELDS = (
        "format",
        "version",
        "chain",
        "query",
        "newest",
        "keys",
        "checkpoints",
        "batches",
        "items",
        "retrieval_failures",
    )

    def __post_init__(self) -> None:
        self._check_references()

    # indexes, built once on first use (the dataclass is frozen, so they are kept beside its fields): the
    # verifier looks a batch, key or checkpoint up per item
    def key(self, fingerprint: bytes) -> KeyEntry:
        return self._keys_by_fingerprint()[fingerprint]

    def batch(self, batch_id: str) -> BatchEntry:
        return self._batches_by_id()[batch_id]

    def checkpoint(self, seq: int) -> CheckpointEntry:
        return self._checkpoints_by_seq()[seq]

    def _cached(self, name: str, build: Callable[[], dict[Any, Any]]) -> dict[Any, Any]:
        index: dict[Any, Any] | None = self.__dict__.get(name)
        if index is None:
            index = build()
            object.__setattr__(self, name, index)
        return index

    def _keys_by_fingerprint(self) -> dict[bytes, KeyEntry]:
        return self._cached("_key_index", lambda: {k.fingerprint: k for k in self.keys})

    def _batches_by_id(self) -> dict[str, BatchEntry]:
        return self._cached("_batch_index", lambda: {b.batch_id: b for b in self.batches})

    def _checkpoints_by_seq(self) -> dict[int, CheckpointEntry]:
        return self._cached("_checkpoint_index", lambda: {c.seq: c for c in self.checkpoints})

    def _check_references(self) -> None:
        keys = self._keys_by_fingerprint()
        if len(keys) != len(self.keys):
            raise BundleFormatError("a key is listed twice")
        batch_ids = self._batches_by_id()
        if len(batch_ids) != len(self.batches):
            raise BundleFormatError("a batch is listed twice")
        seqs = self._checkpoints_by_seq()
        if len(seqs) != len(self.checkpoints):
            raise BundleFormatError("a checkpoint is listed twice")
        used_keys: set[bytes] = set()
        used_checkpoints: set[int] = set()
        for batch in self.batches:
            if batch.gateway_key not in keys or keys[batch.gateway_key].kind != "gateway":
                raise BundleFormatError(f"batch {batch.batch_id} names a gateway key the bundle does not hold")
            used_keys.add(batch.gateway_key)
            if batch.checkpoint_seq is not None:
                if batch.checkpoint_seq not in seqs:
                    raise BundleFormatError(f"batch {batch.batch_id} names a checkpoint the bundle does not hold")
                used_checkpoints.add(batch.checkpoint_seq)
        for item in self.items:
            if item.batch_id not in batch_ids:
                raise BundleFormatError(f"an item names batch {item.batch_id!r}, which the bundle does not hold")
            if item.device_key is not None:
                if item.device_key not in keys or keys[item.device_key].kind != "device":
                    raise BundleFormatError("a reading item names a device key the bundle does not hold")
                used_keys.add(item.device_key)
        cloud_keys = {fp for fp, k in keys.items() if k.kind == "cloud"}
        if self.checkpoints and not cloud_keys:
            raise BundleFormatError("checkpoints without a cloud key")
        # a cloud key is used by the checkpoints whose kid names it; checked when the checkpoint is verified
        used_keys |= cloud_keys
        if set(keys) - used_keys:
            raise BundleFormatError("the bundle lists a key nothing in it uses")
        if set(seqs) - used_checkpoints:
            raise BundleFormatError("the bundle lists a checkpoint no batch uses")
        if len(self.items) + len(self.retrieval_failures) > self.query.limit:
            raise BundleFormatError("the answer holds more leaves than the query's limit")
        if self.newest is None and self.checkpoints:
            raise BundleFormatError("anchored checkpoints but no newest anchor")

    CHAIN_FIELDS = ("chain_id", "registry")

    @classmethod
    def read(cls, value: Any, wire: Wire) -> ProofBundle:
        obj = wire.fields(value, "bundle", cls.FIELDS)
        if obj["format"] != BUNDLE_FORMAT:
            raise BundleFormatError(f"not a {BUNDLE_FORMAT}")
        if type(obj["version"]) is not int or obj["version"] != BUNDLE_VERSION:  # 2.0 and true are not 2
            raise BundleFormatError(
                f"unsupported bundle version {obj['version']!r} (this verifier reads {BUNDLE_VERSION})"
            )
        chain = wire.fields(obj["chain"], "chain", cls.CHAIN_FIELDS)
        return cls(
            chain_id=_uint(chain["chain_id"], "chain.chain_id"),
            registry=wire.read_address(chain["registry"], "chain.registry"),
            query=Query.read(obj["query"], wire),
            newest=None if obj["newest"] is None else NewestAnchor.read(obj["newest"], wire),
            keys=tuple(KeyEntry.read(v, wire) for v in _list(obj["keys"], "keys")),
            checkpoints=tuple(CheckpointEntry.read(v, wire) for v in _list(obj["checkpoints"], "checkpoints")),
            batches=tuple(BatchEntry.read(v, wire) for v in _list(obj["batches"], "batches")),
            items=tuple(ItemEntry.read(v, wire) for v in _list(obj["items"], "items")),
            retrieval_failures=tuple(
                RetrievalFailure.read(v, wire) for v in _list(obj["retrieval_failures"], "retrieval_failures")
            ),
        )

    def write(self, wire: Wire) -> dict[Any, Any]:
        return wire.object(
            self.FIELDS,
            {
                "format": BUNDLE_FORMAT,
                "version": BUNDLE_VERSION,
                "chain": wire.object(
                    self.CHAIN_FIELDS, {"chain_id": self.chain_id, "registry": wire.write_address(self.registry)}
                ),
                "query": self.query.write(wire),
                "newest": None if self.newest is None else self.newest.write(wire),
                "keys": [k.write(wire) for k in self.keys],
                "checkpoints": [c.write(wire) for c in self.checkpoints],
                "batches": [b.write(wire) for b in self.batches],
                "items": [i.write(wire) for i in self.items],
                "retrieval_failures": [f.write(wire) for f in self.retrieval_failures],
            },
        )

    @classmethod
    def from_json(cls, value: Any) -> ProofBundle:
        return cls.read(value, JSON)

    @classmethod
    def from_text(cls, text: bytes | str) -> ProofBundle:
        return cls.from_json(strict_json.loads(text))

    # CBOR only: the key after the fields, the bundle's table of proof hashes (bundle_wire.ProofHashTable)
    CBOR_PROOF_HASHES = len(FIELDS)

    @classmethod
    def from_cbor(cls, data: bytes) -> ProofBundle:
        """The compact encoding (docs/proof-bundle.md, "CBOR encoding"): deterministic CBOR only."""
        value = bundle_wire.load_cbor(data)
        if not isinstance(value, dict) or cls.CBOR_PROOF_HASHES not in value:
            raise BundleFormatError(f"a CBOR bundle must be a map with key {cls.CBOR_PROOF_HASHES} (its proof hashes)")
        fields = {k: v for k, v in value.items() if k != cls.CBOR_PROOF_HASHES}
        table = bundle_wire.ProofHashTable.read(value[cls.CBOR_PROOF_HASHES], "proof_hashes")
        bundle = cls.read(fields, bundle_wire.CborWire(table))
        table.check_all_used("proof_hashes")
        return bundle

    def proofs(self) -> list[tuple[bytes, ...]]:
        """Every proof the bundle holds (its Merkle hashes), in document order."""
        return proofs_of(self.checkpoints, self.batches, self.items)

    def to_json(self) -> dict[str, Any]:
        return self.write(JSON)

    def to_cbor(self) -> bytes:
        table = bundle_wire.ProofHashTable.of(self.proofs())
        value = self.write(bundle_wire.CborWire(table))
        value[self.CBOR_PROOF_HASHES] = table.hashes
        return bundle_wire.dump_cbor(value)
