"""Offline verification of a CarbonTrace proof bundle (docs/proof-bundle.md) or a signed period statement.

Everything is checked from the bundle's own bytes, except what only the chain can say: that the device and
gateway key fingerprints are registered to that device / gateway and not revoked, and which checkpoint roots
were anchored. Those reads go through
the tiny `ChainReader` interface: `Web3ChainReader` (any JSON-RPC node, or the cloud's read-only /rpc) here,
and the cloud's own adapter over cloud/chain.py when the cloud verifies a trace answer itself.

The checks are pure functions, one per step, run in this order (the first failure names the step):

  bundle_format → chain_identity → per item: device_key → device_signature → decoded_view → batch_inclusion
  → gateway_signature → checkpoint_signature → log_inclusion → chain_anchor → consistency

The checkpoint's signature is checked before the log proof is evaluated against its root, so a tampered
checkpoint is reported as such and not as a broken log proof. A batch that is not under an anchored
checkpoint yet is "pending", not invalid.

Run: `python -m carbontrace.verify_bundle BUNDLE.json --rpc URL [--json]` (the lead mounts `verify_command` as
`carbontrace verify`). Exit status: 0 valid, 3 pending, 4 chain unreachable, 2 unreadable input, and for an
invalid bundle the step's own code (`STEP_EXIT`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from carbontrace_protocol import cbor, cose, merkle, strict_json, views
from carbontrace_protocol.batch import LEAF_READING, batch_id, parse_header, parse_leaf
from carbontrace_protocol.errors import ProofError, ProtocolError
from carbontrace_protocol.ids import key_valid_at
from carbontrace_protocol.proof_bundle import BundleFormatError, Query, Trust, exact_fields, normalize_address
from carbontrace_protocol.reading import decode_payload
from carbontrace_protocol.verify import verify_es256, verify_reading

BUNDLE_FORMAT = "carbontrace-proof-bundle"
STATEMENT_FORMAT = "carbontrace-statement"
BUNDLE_VERSION = 1
CHECKPOINT_KID = b"carbontrace-cloud"
KEY_STATE_ACTIVE = 1  # CarbonTraceRegistry.KeyState: 0 none, 1 active, 2 revoked
KEY_STATE_REVOKED = 2
SIGNER_DEVICE, SIGNER_GATEWAY, SIGNER_CLOUD = 1, 2, 3  # CarbonTraceRegistry.SignerKind (0 none)
CLOUD_SIGNER = CHECKPOINT_KID.decode()  # the cloud's signer id on chain is sha256 of this
REGISTRY_ABI_PATH = Path(__file__).resolve().parents[1] / "cloud" / "contracts" / "CarbonTraceRegistry.json"

STEPS = (
    "bundle_format",
    "chain_identity",
    "device_key",
    "device_signature",
    "decoded_view",
    "batch_inclusion",
    "gateway_signature",
    "checkpoint_signature",
    "log_inclusion",
    "chain_anchor",
    "consistency",
    "statement_signature",
    "statement_figures",
    "query_match",
)
EXIT_VALID = 0
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_CHAIN_UNREACHABLE = 4
EXIT_INCOMPLETE = 5  # the cloud lists leaves of the answer it could not prove
EXIT_EMPTY = 6  # nothing answers the query
VERDICT_EXIT = {"valid": EXIT_VALID, "pending": EXIT_PENDING, "incomplete": EXIT_INCOMPLETE, "empty": EXIT_EMPTY}
# One exit code per failing step, so a script can tell them apart without parsing output.
STEP_EXIT = {name: 10 + i for i, name in enumerate(STEPS)}

# The measurement fields of a reading, as they appear in a decoded view.
READING_FIELDS = ("co2_ppm", "temperature_centi_c", "humidity_centi_pct", "energy_wh", "power_deci_w")
READING_META = ("device_id", "seq", "timestamp", "firmware", "flags")


class CheckFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


class ChainUnreachable(Exception):
    """The chain node did not answer: nothing can be concluded, which is not the same as invalid."""


# keyState as a verifier uses it: (state, kind, signer id, enterprise id, activeFrom, revokedAt — None unless
# revoked). The enterprise is the device's or gateway's (zero for a cloud key).
KeyValidity = tuple[int, int, bytes, bytes, int, int | None]
# checkpoint(seq) on chain: (tree size, root, CID of the checkpoint blob).
AnchoredCheckpoint = tuple[int, bytes, str]


class ChainReader(Protocol):
    """The chain reads a verifier needs, bound to one registry contract."""

    def chain_id(self) -> int: ...

    def has_code(self) -> bool: ...

    def checkpoint_count(self) -> int: ...

    def checkpoint(self, seq: int) -> AnchoredCheckpoint:
        """(tree size, root, cid) of anchored checkpoint ``seq``."""
        ...

    def key_state(self, fingerprint: bytes) -> KeyValidity:
        """keyState of a key fingerprint (KeyValidity)."""
        ...


@dataclass
class Step:
    step: str
    ok: bool | None  # None: not applicable to this item, or not reached (pending)
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "ok": self.ok, "detail": self.detail}


@dataclass
class ItemResult:
    index: int
    kind: str
    batch_id: str
    leaf_index: int
    status: str = "valid"  # valid | invalid | pending
    failed_step: str | None = None
    steps: list[Step] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "batch_id": self.batch_id,
            "leaf_index": self.leaf_index,
            "status": self.status,
            "failed_step": self.failed_step,
            "steps": [s.as_json() for s in self.steps],
        }


@dataclass
class Report:
    status: str  # valid | pending | incomplete | empty | invalid
    failed_step: str | None
    detail: str
    items: list[ItemResult]
    steps: list[Step]  # bundle-wide steps (format, chain identity, statement)
    verify_ms: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.status in VERDICT_EXIT:
            return VERDICT_EXIT[self.status]
        return STEP_EXIT.get(self.failed_step or "bundle_format", STEP_EXIT["bundle_format"])

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "failed_step": self.failed_step,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "steps": [s.as_json() for s in self.steps],
            "items": [i.as_json() for i in self.items],
            "verify_ms": round(self.verify_ms, 3),
        }


def canonical_json(value: Any) -> bytes:
    """The bytes a statement signature covers: sorted keys, no spaces, ASCII (values are ints and strings)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_fingerprint(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()


def chain_id_of(text_id: str) -> bytes:
    return hashlib.sha256(text_id.encode()).digest()


def _hex(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise CheckFailed("bundle_format", f"{what} must be a hex string")
    try:
        data = bytes.fromhex(value.removeprefix("0x"))
    except ValueError as err:
        raise CheckFailed("bundle_format", f"{what} is not hex") from err
    if size is not None and len(data) != size:
        raise CheckFailed("bundle_format", f"{what} must be {size} bytes")
    return data


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise CheckFailed("bundle_format", f"{what} must be a list of hashes")
    return [_hex(v, what, 32) for v in value]


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CheckFailed("bundle_format", f"{what} must be a non-negative integer")
    return value


def _proof_error(step: str, err: Exception) -> CheckFailed:
    return CheckFailed(step, f"{type(err).__name__}: {err}")


# ---- pure checks, one per step -------------------------------------------------------------------------


# Every object of a bundle has exactly these fields: each is checked against signed bytes or the chain, or it
# is not in the bundle (an unknown field is a format error, not something a reader might trust).
BUNDLE_FIELDS = (
    "format",
    "version",
    "query",
    "chain",
    "cloud_key",
    "newest",
    "checkpoints",
    "devices",
    "batches",
    "items",
    "retrieval_failures",
)
CHECKPOINT_FIELDS = ("seq", "signed", "cid", "consistency_from_previous", "consistency_to_newest")
DEVICE_FIELDS = ("device_id", "public_key", "key_fingerprint", "chain_device_id")
BATCH_FIELDS = ("batch_id", "signed_header", "gateway_public_key", "log_index", "checkpoint_seq", "log_proof")
ITEM_FIELDS = ("kind", "batch_id", "leaf_index", "device_id", "leaf", "batch_proof", "view")
FAILURE_FIELDS = ("kind", "batch_id", "leaf_index", "device_id", "failed_step")


def _exact(value: Any, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    try:
        return exact_fields(value, what, fields)
    except BundleFormatError as err:
        raise CheckFailed("bundle_format", str(err)) from err


def check_format(bundle: Any) -> Query:
    """The bundle's shape, exactly; returns the query it answers."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise CheckFailed("bundle_format", f"not a {BUNDLE_FORMAT}")
    if bundle.get("version") != BUNDLE_VERSION or isinstance(bundle.get("version"), bool):
        raise CheckFailed("bundle_format", f"unsupported bundle version {bundle.get('version')!r}")
    _exact(bundle, "bundle", BUNDLE_FIELDS)
    for name, kind in (
        ("chain", dict),
        ("cloud_key", dict),
        ("checkpoints", list),
        ("devices", list),
        ("batches", list),
        ("items", list),
    ):
        if not isinstance(bundle.get(name), kind):
            raise CheckFailed("bundle_format", f"{name} missing or of the wrong type")
    if not isinstance(bundle["retrieval_failures"], list):
        raise CheckFailed("bundle_format", "retrieval_failures must be a list")
    _exact(bundle["chain"], "chain", ("chain_id", "registry"))
    _exact(bundle["cloud_key"], "cloud_key", ("kid", "public_key"))
    _int(bundle["chain"].get("chain_id"), "chain.chain_id")
    try:
        if normalize_address(str(bundle["chain"]["registry"])) != bundle["chain"]["registry"]:
            raise BundleFormatError("chain.registry must be 0x followed by 40 lowercase hex digits")
        query = Query.from_json(bundle["query"])
    except BundleFormatError as err:
        raise CheckFailed("bundle_format", str(err)) from err
    if bundle["cloud_key"]["kid"] != CHECKPOINT_KID.decode():
        raise CheckFailed("bundle_format", "cloud_key.kid must be carbontrace-cloud")
    _hex(bundle["cloud_key"].get("public_key"), "cloud_key.public_key", 65)
    if bundle["newest"] is not None:
        _exact(bundle["newest"], "newest", ("seq", "tree_size", "root"))
    for what, rows, fields in (
        ("checkpoint", bundle["checkpoints"], CHECKPOINT_FIELDS),
        ("device", bundle["devices"], DEVICE_FIELDS),
        ("batch", bundle["batches"], BATCH_FIELDS),
        ("item", bundle["items"], ITEM_FIELDS),
        ("retrieval failure", bundle["retrieval_failures"], FAILURE_FIELDS),
    ):
        for row in rows:
            _exact(row, what, fields)
    if len(bundle["items"]) + len(bundle["retrieval_failures"]) > query.limit:
        raise CheckFailed("bundle_format", "the answer holds more leaves than the query's limit")
    return query


def check_chain_identity(bundle: dict[str, Any], chain: ChainReader, trust: Trust) -> None:
    """The bundle names the registry and chain the verifier pinned (out of band), and the node is that chain."""
    named = (bundle["chain"]["chain_id"], bundle["chain"]["registry"])
    if named != (trust.chain_id, trust.registry):
        raise CheckFailed(
            "chain_identity",
            f"the bundle names registry {named[1]} on chain {named[0]}; "
            f"the pinned trust anchor is {trust.registry} on chain {trust.chain_id}",
        )
    actual = chain.chain_id()
    if actual != trust.chain_id:
        raise CheckFailed("chain_identity", f"the node is chain {actual}, the trust anchor names {trust.chain_id}")
    if not chain.has_code():
        raise CheckFailed("chain_identity", f"no contract at {trust.registry} on this chain")


def check_device_key(device: dict[str, Any], chain: ChainReader, seq: int | None = None) -> tuple[bytes, bytes]:
    """(device key, its enterprise's on-chain id), once the chain shows the key registered to this device and
    valid for a batch first anchored under checkpoint ``seq``."""
    public_key = _hex(device.get("public_key"), "device public_key", 65)
    fingerprint = key_fingerprint(public_key)
    if _hex(device.get("key_fingerprint"), "key_fingerprint", 32) != fingerprint:
        raise CheckFailed("device_key", "key_fingerprint is not sha256 of the public key")
    device_id = device.get("device_id")
    if not isinstance(device_id, str) or _hex(device.get("chain_device_id"), "chain_device_id", 32) != chain_id_of(
        device_id
    ):
        raise CheckFailed("device_key", "chain_device_id is not sha256 of the device id")
    return public_key, check_key_on_chain("device_key", chain, fingerprint, SIGNER_DEVICE, device_id, seq)


def check_key_on_chain(
    step: str, chain: ChainReader, fingerprint: bytes, kind: int, signer: str, seq: int | None = None
) -> bytes:
    """The chain lists ``fingerprint`` as a key of the device, gateway or cloud named ``signer``, valid for a
    batch first anchored under checkpoint ``seq``; returns the signer's on-chain enterprise id."""
    state, chain_kind, chain_signer, enterprise_id, active_from, revoked_at = chain.key_state(fingerprint)
    what = {SIGNER_DEVICE: "device", SIGNER_GATEWAY: "gateway", SIGNER_CLOUD: "cloud"}[kind]
    if state not in (KEY_STATE_ACTIVE, KEY_STATE_REVOKED):
        raise CheckFailed(step, f"{what} key fingerprint is not registered on chain")
    if chain_kind != kind or chain_signer != chain_id_of(signer):
        raise CheckFailed(step, f"key fingerprint is registered to another {'signer' if chain_kind != kind else what}")
    if not key_valid_at(state, active_from, revoked_at, seq):
        when = "now (the batch is not anchored yet)" if seq is None else f"for checkpoint {seq}"
        revoked = f", revoked at checkpoint {revoked_at}" if state == KEY_STATE_REVOKED else ""
        raise CheckFailed(step, f"{what} key not valid {when}: active from checkpoint {active_from}{revoked}")
    return enterprise_id


def check_device_signature(leaf: bytes, device_id: str, public_key: bytes) -> dict[str, Any]:
    """The reading in a reading leaf, once the device signature verifies; returns its decoded fields."""
    try:
        kind, body = parse_leaf(leaf)
    except ProtocolError as err:
        raise _proof_error("device_signature", err) from err
    if kind != LEAF_READING:
        raise CheckFailed("device_signature", "leaf is not a reading leaf")
    try:
        reading = verify_reading(body, public_key)
    except ProtocolError as err:
        raise _proof_error("device_signature", err) from err
    if reading.device_id != device_id:
        raise CheckFailed("device_signature", "the reading names another device")
    return {name: getattr(reading, name) for name in READING_META + READING_FIELDS}


def leaf_content(leaf: bytes) -> tuple[str, dict[str, Any]]:
    """("reading" | "aggregate", decoded fields) of a leaf, signature not checked."""
    try:
        kind, body = parse_leaf(leaf)
        if kind == LEAF_READING:
            reading = decode_payload(cose.parse_sign1(body).payload)
            return "reading", {name: getattr(reading, name) for name in READING_META + READING_FIELDS}
    except ProtocolError as err:
        raise _proof_error("decoded_view", err) from err
    return "aggregate", aggregate_json(body)


aggregate_json = views.aggregate_json  # an aggregate leaf's map as JSON (one definition, in the protocol core)


def check_decoded_view(view: Any, content: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every field the answer shows must be the leaf's own value (a view may show fewer fields, never others)."""
    if not isinstance(view, dict):
        raise CheckFailed("decoded_view", "view must be a map")
    for name, value in view.items():
        # exact JSON types: 674.0 is not 674 and false is not 0, though Python's == says they are
        if name not in content or not views.same_json(value, content[name]):
            raise CheckFailed("decoded_view", f"view field {name!r} differs from the leaf")
    if set(view) != set(expected):
        raise CheckFailed("decoded_view", "the view does not show exactly the leaf's fields of the query's types")


def check_batch_inclusion(leaf: bytes, leaf_index: int, proof: list[bytes], header: dict[str, Any]) -> None:
    size = header["readings"] + header["aggregates"]
    try:
        merkle.verify_inclusion(merkle.leaf_hash(leaf), leaf_index, size, proof, bytes(header["root"]))
    except (ProofError, ValueError) as err:
        raise _proof_error("batch_inclusion", err) from err


def parse_signed_header(signed_header: bytes) -> tuple[cose.Sign1, dict[str, Any]]:
    try:
        return parse_header(signed_header)
    except ProtocolError as err:
        raise _proof_error("batch_inclusion", err) from err


def check_gateway_signature(message: cose.Sign1, header: dict[str, Any], gateway_key: bytes) -> None:
    if message.kid != header["gateway"].encode():
        raise CheckFailed("gateway_signature", "header key id is not the gateway id")
    if not verify_es256(gateway_key, message.signed_bytes(), message.signature):
        raise CheckFailed("gateway_signature", "gateway signature on the batch header does not verify")


def check_checkpoint_signature(signed: bytes, cloud_key: bytes) -> tuple[int, bytes]:
    """(tree size, root) of a signed checkpoint, once the cloud's signature on it verifies."""
    try:
        message = cose.parse_sign1(signed)
    except ProtocolError as err:
        raise _proof_error("checkpoint_signature", err) from err
    if message.kid != CHECKPOINT_KID:
        raise CheckFailed("checkpoint_signature", "checkpoint key id is not the cloud's")
    if not verify_es256(cloud_key, message.signed_bytes(), message.signature):
        raise CheckFailed("checkpoint_signature", "cloud signature on the checkpoint does not verify")
    try:
        payload = cbor.decode(message.payload)
    except ProtocolError as err:
        raise _proof_error("checkpoint_signature", err) from err
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("size"), int)
        or not isinstance(payload.get("root"), bytes)
    ):
        raise CheckFailed("checkpoint_signature", "checkpoint payload lacks size/root")
    return int(payload["size"]), bytes(payload["root"])


def check_log_inclusion(signed_header: bytes, log_index: int, size: int, proof: list[bytes], root: bytes) -> None:
    try:
        merkle.verify_inclusion(merkle.leaf_hash(signed_header), log_index, size, proof, root)
    except (ProofError, ValueError) as err:
        raise _proof_error("log_inclusion", err) from err


def check_chain_anchor(seq: int, size: int, root: bytes, cid: Any, chain: ChainReader) -> None:
    if seq >= chain.checkpoint_count():
        raise CheckFailed("chain_anchor", f"checkpoint {seq} is not anchored on chain")
    chain_size, chain_root, chain_cid = chain.checkpoint(seq)
    if (chain_size, chain_root) != (size, root):
        raise CheckFailed("chain_anchor", f"chain checkpoint {seq} has size/root {chain_size}/{chain_root.hex()}")
    if cid != chain_cid:
        raise CheckFailed("chain_anchor", f"the bundle's checkpoint cid is not the one anchored on chain ({chain_cid})")


def check_query_match(
    query: Query,
    kind: str,
    content: dict[str, Any],
    header: dict[str, Any],
    gateway_enterprise: bytes,
    device_enterprise: bytes | None,
) -> str:
    """The leaf answers the query the bundle names: enterprise (the signers' on chain, from keyState), site,
    device, types and period."""
    step = "query_match"
    device = content.get("device_id" if kind == "reading" else "device")
    if query.enterprise_id is not None:
        wanted = chain_id_of(query.enterprise_id)
        if gateway_enterprise != wanted:
            raise CheckFailed(
                step, f"the batch's gateway is registered on chain to another enterprise than {query.enterprise_id!r}"
            )
        if device_enterprise is not None and device_enterprise != wanted:
            raise CheckFailed(
                step, f"the reading's device is registered on chain to another enterprise than {query.enterprise_id!r}"
            )
    if query.site_id is not None and header["site"] != query.site_id:
        raise CheckFailed(step, f"the batch is of site {header['site']!r}, the query asks for {query.site_id!r}")
    if query.device_id is not None and device != query.device_id:
        raise CheckFailed(step, f"the leaf is of device {device!r}, the query asks for {query.device_id!r}")
    if not views.selects(kind, content, query.types):
        raise CheckFailed(step, f"the leaf carries none of the types {sorted(t.value for t in query.types)}")
    try:
        start, end = views.leaf_time(kind, content)
    except ValueError as err:
        raise CheckFailed(step, str(err)) from err
    if (query.start is not None and end <= query.start) or (query.end is not None and start >= query.end):
        raise CheckFailed(step, f"the leaf's time [{start}, {end}) lies outside the queried period")
    return "enterprise (on chain), site, device, types and period are the query's"


def check_consistency(
    seq: int, size: int, root: bytes, checkpoint: dict[str, Any], newest: dict[str, Any] | None, chain: ChainReader
) -> str:
    """The anchored checkpoint before this one is a prefix of it, and it is a prefix of the newest anchor."""
    try:
        if seq > 0:
            previous_size, previous_root, _ = chain.checkpoint(seq - 1)
            proof = _hashes(checkpoint.get("consistency_from_previous"), "consistency_from_previous")
            merkle.verify_consistency(previous_size, size, previous_root, root, proof)
        if newest is None:
            raise CheckFailed("consistency", "bundle names no newest anchored checkpoint")
        newest_seq = _int(newest.get("seq"), "newest.seq")
        newest_size = _int(newest.get("tree_size"), "newest.tree_size")
        newest_root = _hex(newest.get("root"), "newest.root", 32)
        if newest_seq < seq or newest_seq >= chain.checkpoint_count():
            raise CheckFailed("consistency", f"newest checkpoint {newest_seq} is not anchored after {seq}")
        if chain.checkpoint(newest_seq)[:2] != (newest_size, newest_root):
            raise CheckFailed("consistency", f"chain checkpoint {newest_seq} differs from the bundle's newest")
        proof = _hashes(checkpoint.get("consistency_to_newest"), "consistency_to_newest")
        merkle.verify_consistency(size, newest_size, root, newest_root, proof)
    except (ProofError, ValueError) as err:
        raise _proof_error("consistency", err) from err
    newer = chain.checkpoint_count() - 1 - newest_seq
    later = f"; the chain has {newer} newer checkpoint(s) since the bundle was made" if newer > 0 else ""
    return f"consistent with the previous anchor and with anchor {newest_seq} (size {newest_size}){later}"


# ---- the driver ----------------------------------------------------------------------------------------


class CachedChainReader:
    """Each chain read once per verification run (or per trace request, when the cloud shares one)."""

    def __init__(self, inner: ChainReader) -> None:
        self.inner = inner
        self._cache: dict[tuple[Any, ...], Any] = {}

    def _get(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = read()
            except CheckFailed:
                raise
            except Exception as err:  # any transport or decoding failure of the node: report, do not guess
                raise ChainUnreachable(f"{type(err).__name__}: {err}") from err
        return self._cache[key]

    def chain_id(self) -> int:
        return int(self._get(("chain_id",), self.inner.chain_id))

    def has_code(self) -> bool:
        return bool(self._get(("code",), self.inner.has_code))

    def checkpoint_count(self) -> int:
        return int(self._get(("count",), self.inner.checkpoint_count))

    def checkpoint(self, seq: int) -> AnchoredCheckpoint:
        result: AnchoredCheckpoint = self._get(("checkpoint", seq), lambda: self.inner.checkpoint(seq))
        return result

    def key_state(self, fingerprint: bytes) -> KeyValidity:
        result: KeyValidity = self._get(("key", fingerprint), lambda: self.inner.key_state(fingerprint))
        return result


def _index(rows: list[Any], key: str, what: str) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if not isinstance(row, dict) or key not in row:
            raise CheckFailed("bundle_format", f"every {what} needs {key!r}")
        out[row[key]] = row
    return out


def _verify_item(
    index: int,
    item: Any,
    bundle: dict[str, Any],
    devices: dict[Any, dict[str, Any]],
    batches: dict[Any, dict[str, Any]],
    checkpoints: dict[Any, dict[str, Any]],
    chain: ChainReader,
    query: Query,
) -> ItemResult:
    if not isinstance(item, dict):
        result = ItemResult(index, "?", "?", -1)
        result.status, result.failed_step = "invalid", "bundle_format"
        result.steps.append(Step("bundle_format", False, "item must be a map"))
        return result
    shown_index = item.get("leaf_index")
    result = ItemResult(
        index, str(item.get("kind")), str(item.get("batch_id")), shown_index if isinstance(shown_index, int) else -1
    )
    current = "bundle_format"

    def passed(step: str, detail: str) -> None:
        result.steps.append(Step(step, True, detail))

    try:
        kind = item.get("kind")
        if kind not in ("reading", "aggregate"):
            raise CheckFailed("bundle_format", "item kind must be reading or aggregate")
        if not isinstance(item.get("device_id"), str):
            raise CheckFailed("bundle_format", "item device_id must be a string")
        leaf = _hex(item.get("leaf"), "leaf")
        leaf_index = _int(item.get("leaf_index"), "leaf_index")
        batch = batches.get(item.get("batch_id"))
        if batch is None:
            raise CheckFailed("bundle_format", "item names a batch the bundle does not hold")
        content: dict[str, Any] | None = None
        device_enterprise: bytes | None = None
        # the checkpoint the batch is proven under: every key must have been valid when it was anchored
        seq = batch.get("checkpoint_seq")
        if seq is not None:
            seq = _int(seq, "checkpoint_seq")
        if kind == "reading":
            device = devices.get(item.get("device_id"))
            if device is None:
                raise CheckFailed("bundle_format", "reading item names a device the bundle does not hold")
            current = "device_key"
            public_key, device_enterprise = check_device_key(device, chain, seq)
            passed(current, "fingerprint registered to this device on chain, valid when its batch was anchored")
            current = "device_signature"
            content = check_device_signature(leaf, str(item["device_id"]), public_key)
            passed(current, "ES256 signature of the device verifies")
        else:
            result.steps.append(Step("device_key", None, "aggregate leaf: signed by the gateway, not a device"))
            result.steps.append(Step("device_signature", None, "aggregate leaf: covered by the gateway signature"))
        current = "decoded_view"
        leaf_kind, decoded = leaf_content(leaf)
        if leaf_kind != kind:
            raise CheckFailed("decoded_view", f"item says {kind}, the leaf is a {leaf_kind}")
        content = content or decoded
        shown_device = content.get("device_id" if kind == "reading" else "device")
        if item["device_id"] != shown_device:
            raise CheckFailed(current, f"item says device {item['device_id']!r}, the leaf names {shown_device!r}")
        check_decoded_view(item.get("view", {}), content, views.view(kind, content, query.types))
        passed(current, "every shown field is the leaf's value, with its exact type")
        current = "batch_inclusion"
        signed_header = _hex(batch.get("signed_header"), "signed_header")
        message, header = parse_signed_header(signed_header)
        if batch.get("batch_id") != batch_id(header["gateway"], header["batch_seq"]):
            raise CheckFailed(current, "batch_id is not the id in the signed batch header")
        check_batch_inclusion(leaf, leaf_index, _hashes(item.get("batch_proof"), "batch_proof"), header)
        passed(current, f"leaf {leaf_index} of {header['readings'] + header['aggregates']} under the batch root")
        current = "gateway_signature"
        gateway_key = _hex(batch.get("gateway_public_key"), "gateway_public_key", 65)
        check_gateway_signature(message, header, gateway_key)
        # the bundle carries the gateway key; only the chain says it is this gateway's, valid at that point
        gateway_enterprise = check_key_on_chain(
            current, chain, key_fingerprint(gateway_key), SIGNER_GATEWAY, header["gateway"], seq
        )
        passed(current, f"batch header signed by gateway {header['gateway']}, its key valid on chain")
        current = "query_match"
        passed(current, check_query_match(query, kind, content, header, gateway_enterprise, device_enterprise))
        if seq is None:
            result.status = "pending"
            for step in ("checkpoint_signature", "log_inclusion", "chain_anchor", "consistency"):
                result.steps.append(Step(step, None, "pending: the batch is not under an anchored checkpoint yet"))
            return result
        checkpoint = checkpoints.get(seq)
        if checkpoint is None:
            raise CheckFailed("bundle_format", f"batch names checkpoint {seq} the bundle does not hold")
        current = "checkpoint_signature"
        cloud_key = _hex(bundle["cloud_key"]["public_key"], "cloud key", 65)
        size, root = check_checkpoint_signature(_hex(checkpoint.get("signed"), "checkpoint signed"), cloud_key)
        # the bundle carries the cloud key; only the chain says it is the cloud's, valid for this checkpoint
        check_key_on_chain(current, chain, key_fingerprint(cloud_key), SIGNER_CLOUD, CLOUD_SIGNER, seq)
        passed(current, f"checkpoint {seq} (size {size}) signed by a cloud key the chain lists for it")
        current = "log_inclusion"
        log_index = _int(batch.get("log_index"), "log_index")
        check_log_inclusion(signed_header, log_index, size, _hashes(batch.get("log_proof"), "log_proof"), root)
        passed(current, f"batch header is log leaf {log_index} of {size}")
        current = "chain_anchor"
        check_chain_anchor(int(seq), size, root, checkpoint.get("cid"), chain)
        passed(current, f"chain checkpoint {seq} holds this size and root")
        current = "consistency"
        passed(current, check_consistency(int(seq), size, root, checkpoint, bundle.get("newest"), chain))
    except CheckFailed as failure:
        result.status, result.failed_step = "invalid", failure.step
        result.steps.append(Step(failure.step, False, failure.detail))
    return result


def verify_bundle(bundle: Any, chain: ChainReader, trust: Trust) -> Report:
    """Every check of a proof bundle against the pinned ``trust``. Raises ChainUnreachable if the chain
    cannot be read."""
    started = time.perf_counter()
    cached = chain if isinstance(chain, CachedChainReader) else CachedChainReader(chain)
    steps: list[Step] = []
    try:
        query = check_format(bundle)
        devices = _index(bundle["devices"], "device_id", "device")
        batches = _index(bundle["batches"], "batch_id", "batch")
        checkpoints = _index(bundle["checkpoints"], "seq", "checkpoint")
        steps.append(Step("bundle_format", True, f"{BUNDLE_FORMAT} v{BUNDLE_VERSION}"))
        check_chain_identity(bundle, cached, trust)
        steps.append(Step("chain_identity", True, f"chain {bundle['chain']['chain_id']}, registry has code"))
    except CheckFailed as failure:
        steps.append(Step(failure.step, False, failure.detail))
        return Report("invalid", failure.step, failure.detail, [], steps, (time.perf_counter() - started) * 1000)
    items = [
        _verify_item(i, item, bundle, devices, batches, checkpoints, cached, query)
        for i, item in enumerate(bundle["items"])
    ]
    return _summarize(items, steps, started, len(bundle["retrieval_failures"]), query.limit)


def _summarize(items: list[ItemResult], steps: list[Step], started: float, failures: int, limit: int) -> Report:
    """invalid (a step failed) > incomplete (the cloud could not prove some leaves) > empty > pending > valid."""
    failed = next((i for i in items if i.status == "invalid"), None)
    elapsed = (time.perf_counter() - started) * 1000
    if failed is not None:
        detail = next((s.detail for s in failed.steps if s.ok is False), "")
        return Report("invalid", failed.failed_step, f"item {failed.index}: {detail}", items, steps, elapsed)
    if failures:
        detail = f"incomplete: the cloud could not prove {failures} leaf(s) of the answer (retrieval_failures)"
        return Report("incomplete", None, detail, items, steps, elapsed)
    if not items:
        return Report("empty", None, "nothing answers the query", items, steps, elapsed)
    if any(i.status == "pending" for i in items):
        return Report("pending", None, "some batches are not anchored yet", items, steps, elapsed)
    more = " (as many as the query's limit: there may be more)" if len(items) == limit else ""
    return Report("valid", None, f"{len(items)} item(s) verified{more}", items, steps, elapsed)


# ---- statements ----------------------------------------------------------------------------------------


def statement_figures(bundle: dict[str, Any]) -> dict[str, Any]:
    """The figures a statement must show, recomputed from the aggregate leaves in its bundle."""
    energy_wh = 0
    expected = received = missing = 0
    emissions: dict[str, int] = {}
    for item in bundle.get("items", []):
        if not isinstance(item, dict) or item.get("kind") != "aggregate":
            continue
        kind, body = leaf_content(_hex(item.get("leaf"), "leaf"))
        if kind != "aggregate":
            continue
        expected += int(body.get("expected", 0))
        received += int(body.get("received", 0))
        missing += int(body.get("missing", 0))
        energy = body.get("energy")
        if isinstance(energy, dict):
            energy_wh += int(energy.get("delta_wh", 0))
        factor = body.get("factor")
        grams = body.get("emissions_g")
        if isinstance(factor, dict) and isinstance(grams, dict):
            emissions[str(factor.get("id"))] = emissions.get(str(factor.get("id")), 0) + int(grams["m"])
    return {
        "energy_wh": energy_wh,
        "emissions_g_e4_by_factor": dict(sorted(emissions.items())),
        "emissions_g_e4": sum(emissions.values()),
        "expected_readings": expected,
        "received_readings": received,
        "missing_by_seq": missing,
    }


def verify_statement(document: Any, chain: ChainReader, trust: Trust) -> Report:
    """A signed period statement: its signature, its figures against its leaves, then its proof bundle."""
    started = time.perf_counter()
    steps: list[Step] = []
    try:
        if not isinstance(document, dict) or document.get("format") != STATEMENT_FORMAT:
            raise CheckFailed("bundle_format", f"not a {STATEMENT_FORMAT}")
        statement, signature, bundle = document.get("statement"), document.get("signature"), document.get("bundle")
        if not isinstance(statement, dict) or not isinstance(signature, dict) or not isinstance(bundle, dict):
            raise CheckFailed("bundle_format", "statement, signature and bundle must be maps")
        check_format(bundle)
        cloud_key = _hex(bundle["cloud_key"]["public_key"], "cloud key", 65)
        if signature.get("alg") != "ES256" or signature.get("kid") != CHECKPOINT_KID.decode():
            raise CheckFailed("statement_signature", "signature must be ES256 by the cloud key")
        if statement.get("bundle_sha256") != hashlib.sha256(canonical_json(bundle)).hexdigest():
            raise CheckFailed("statement_signature", "bundle_sha256 does not match the enclosed bundle")
        if not verify_es256(cloud_key, canonical_json(statement), _hex(signature.get("value"), "signature", 64)):
            raise CheckFailed("statement_signature", "cloud signature on the statement does not verify")
        if signature.get("public_key") != bundle["cloud_key"]["public_key"]:
            raise CheckFailed("statement_signature", "the statement names another key than its bundle's cloud key")
        # a statement is not anchored: its key must be a cloud key the chain lists as active now
        check_key_on_chain("statement_signature", chain, key_fingerprint(cloud_key), SIGNER_CLOUD, CLOUD_SIGNER)
        steps.append(Step("statement_signature", True, "ES256 over the canonical JSON of the statement"))
        recomputed = statement_figures(bundle)
        shown = statement.get("figures")
        if not isinstance(shown, dict) or any(shown.get(k) != v for k, v in recomputed.items()):
            raise CheckFailed("statement_figures", f"figures differ from the leaves: recomputed {recomputed}")
        steps.append(Step("statement_figures", True, "every figure recomputed from its aggregate leaves"))
    except CheckFailed as failure:
        steps.append(Step(failure.step, False, failure.detail))
        return Report("invalid", failure.step, failure.detail, [], steps, (time.perf_counter() - started) * 1000)
    report = verify_bundle(bundle, chain, trust)
    report.steps = steps + report.steps
    report.verify_ms = (time.perf_counter() - started) * 1000
    return report


def verify_document(document: Any, chain: ChainReader, trust: Trust) -> Report:
    if isinstance(document, dict) and document.get("format") == STATEMENT_FORMAT:
        return verify_statement(document, chain, trust)
    return verify_bundle(document, chain, trust)


# ---- the chain behind JSON-RPC ---------------------------------------------------------------------------


class Web3ChainReader:
    """ChainReader over web3 (an HTTP JSON-RPC node, or any Web3 instance) and the committed registry ABI."""

    def __init__(self, w3: Any, registry_address: str) -> None:
        from eth_utils.address import to_checksum_address

        abi = json.loads(REGISTRY_ABI_PATH.read_text())["abi"]
        self.w3 = w3
        self.address = to_checksum_address(registry_address)
        self.contract = w3.eth.contract(address=self.address, abi=abi)

    @classmethod
    def over_http(cls, url: str, registry_address: str, timeout_s: float = 10.0) -> Web3ChainReader:
        from web3 import HTTPProvider, Web3

        provider = HTTPProvider(url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
        return cls(Web3(provider), registry_address)

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def has_code(self) -> bool:
        return len(self.w3.eth.get_code(self.address)) > 0

    def checkpoint_count(self) -> int:
        return int(self.contract.functions.checkpointCount().call())

    def checkpoint(self, seq: int) -> AnchoredCheckpoint:
        tree_size, _timestamp, root, cid = self.contract.functions.checkpoint(seq).call()
        return int(tree_size), bytes(root), str(cid)

    def key_state(self, fingerprint: bytes) -> KeyValidity:
        state, kind, signer_id, enterprise_id, active_from, revoked_at = self.contract.functions.keyState(
            fingerprint
        ).call()
        revoked = int(revoked_at) if int(state) == KEY_STATE_REVOKED else None
        return int(state), int(kind), bytes(signer_id), bytes(enterprise_id), int(active_from), revoked


def _human(report: Report) -> str:
    lines = [f"{report.status.upper()}" + (f" at step {report.failed_step}" if report.failed_step else "")]
    lines.append(f"  {report.detail}")
    for step in report.steps:
        lines.append(f"  [{'ok' if step.ok else 'FAIL'}] {step.step}: {step.detail}")
    for item in report.items:
        lines.append(f"  item {item.index} ({item.kind} {item.batch_id} leaf {item.leaf_index}): {item.status}")
        for step in item.steps:
            mark = "ok" if step.ok else ("--" if step.ok is None else "FAIL")
            lines.append(f"    [{mark}] {step.step}: {step.detail}")
    lines.append(f"  checks took {report.verify_ms:.1f} ms (chain reads included)")
    return "\n".join(lines)


def load_trust(trust_file: Path | None, registry: str | None, chain_id: int | None) -> Trust:
    """The trust anchor, from a pinned trust file or from --registry and --chain-id (never from the bundle)."""
    if trust_file is not None:
        if registry is not None or chain_id is not None:
            raise ValueError("give either --trust or --registry with --chain-id, not both")
        return Trust.from_text(trust_file.read_bytes())
    if registry is None or chain_id is None:
        raise ValueError("the trust anchor is required: --trust trust.json, or --registry 0x… and --chain-id N")
    return Trust(chain_id, normalize_address(registry))


def verify_command(
    bundle_path: Annotated[Path, typer.Argument(help="proof bundle or signed statement (JSON)", metavar="BUNDLE.json")],
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of a node of the pinned chain, or cloud /rpc")],
    trust_file: Annotated[
        Path | None, typer.Option("--trust", help="pinned trust file (the cloud publishes it at /api/v1/trust)")
    ] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="pinned registry contract address")] = None,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="pinned chain id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report on stdout")] = False,
) -> None:
    """Verify a proof bundle offline: everything from its bytes, plus the pinned registry's keys and anchors.

    The registry address and chain id are pinned out of band (--trust, or --registry and --chain-id); a
    bundle naming another registry or chain fails. Exit status: 0 valid; 3 pending (not anchored yet); 4
    chain unreachable; 5 incomplete (the cloud could not prove some leaves); 6 empty (nothing answers the
    query); 2 unusable input or no trust anchor; 10+ the failing step (STEP_EXIT, docs/proof-bundle.md)."""
    try:
        trust = load_trust(trust_file, registry, chain_id)
    except (OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    try:
        document = strict_json.loads(bundle_path.read_bytes())
    except OSError as err:
        typer.echo(f"error: cannot read {bundle_path}: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    except strict_json.StrictJSONError as err:
        # not one meaning: duplicate keys, NaN, too deep; that is the bundle's own format failing
        report = Report("invalid", "bundle_format", str(err), [], [Step("bundle_format", False, str(err))])
        typer.echo(json.dumps(report.as_json(), indent=2) if as_json else _human(report))
        raise typer.Exit(report.exit_code) from err
    try:
        report = verify_document(document, Web3ChainReader.over_http(rpc, trust.registry), trust)
    except ChainUnreachable as err:
        if as_json:
            typer.echo(json.dumps({"status": "unknown", "error": "chain_unreachable", "detail": str(err)}))
        else:
            typer.echo(f"error: chain at {rpc} unreachable: {err}", err=True)
        raise typer.Exit(EXIT_CHAIN_UNREACHABLE) from err
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else _human(report))
    raise typer.Exit(report.exit_code)


verify_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
verify_app.command(name="verify")(verify_command)


if __name__ == "__main__":  # pragma: no cover - `python -m carbontrace.verify_bundle`
    sys.exit(verify_app())
