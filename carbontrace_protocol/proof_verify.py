"""Verify a proof bundle against a pinned trust anchor and the chain: the per-step report.

``verify_bundle(bundle, chain, trust)`` runs pure checks on the bundle's bytes and reads the chain only
through ``ChainReader`` (the CLI's JSON-RPC reader, the cloud's own adapter, or a recorded chain in the
conformance cases). Steps, in order (the first failure names the step; docs/proof-bundle.md):

  bundle_format → chain_identity → per item: device_key → device_signature → reading_time → field_openings
  → decoded_view → batch_inclusion
  → gateway_signature → query_match → checkpoint_signature → log_inclusion → chain_anchor → consistency

Key validity: a key counts for a batch first anchored under checkpoint seq S when the chain lists it for
that signer with activeFrom <= S and (still active, or S < revokedAt); so revoking a key voids only what
was anchored after the revocation. A pending batch (no anchor yet) needs keys active now.

Verdicts: valid; pending (some batch not anchored yet); incomplete (the cloud lists leaves it could not
prove); empty (nothing answers the query); invalid at a step. Each has its own exit code (EXIT_*, STEP_EXIT).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from carbontrace_protocol import checkpoint as signed_checkpoint
from carbontrace_protocol import disclosure, merkle, views
from carbontrace_protocol.batch import LEAF_FLUX, LEAF_READING, batch_id, leaf_count, parse_header, parse_leaf
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.flux import Flux
from carbontrace_protocol.ids import (
    CLOUD_SIGNER,
    KEY_NONE,
    KEY_REVOKED,
    SIGNER_CLOUD,
    SIGNER_DEVICE,
    SIGNER_GATEWAY,
    SIGNER_KIND_NAMES,
    chain_id_of,
    key_valid_at,
)
from carbontrace_protocol.proof_bundle import (
    BUNDLE_VERSION,
    WITHHELD_STEP,
    BatchEntry,
    BundleFormatError,
    ItemEntry,
    ProofBundle,
    Trust,
)
from carbontrace_protocol.reading import Reading
from carbontrace_protocol.retime import BAD_REFERENCE, NO_REFERENCE, RetimeRejected, retimed_timestamp
from carbontrace_protocol.verify import verify_es256, verify_flux, verify_reading

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
    "statement_completeness",
    # paged statements (carbontrace_protocol/statement_summary.py); appended so no earlier exit code moves
    "summary_signature",
    "summary_pages",
    "summary_figures",
    "summary_completeness",
    # selective disclosure (carbontrace_protocol/disclosure.py); appended so no earlier exit code moves
    "field_openings",
    # a re-timed reading's time, re-derived from its signed reference (carbontrace_protocol/retime.py)
    "reading_time",
    # the links between the pinned registry and its predecessors (carbontrace_protocol/registry_chain.py)
    "registry_chain",
    # market-based Scope 2 figures of a statement (carbontrace_protocol/market_based.py)
    "statement_market_based",
)
# the steps of a period summary (statement_summary.verify_summary); the conformance set has no case for them yet
SUMMARY_STEPS = ("summary_signature", "summary_pages", "summary_figures", "summary_completeness")
ITEM_STEPS = (
    "device_key",
    "device_signature",
    "reading_time",
    "field_openings",
    "decoded_view",
    "batch_inclusion",
    "gateway_signature",
    "query_match",
    "checkpoint_signature",
    "log_inclusion",
    "chain_anchor",
    "consistency",
)
ANCHOR_STEPS = ("checkpoint_signature", "log_inclusion", "chain_anchor", "consistency")
# One exit code per failing step (fixed numbers: a script can tell them apart without parsing output).
STEP_EXIT = {name: 10 + i for i, name in enumerate(STEPS)}
EXIT_VALID = 0
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_CHAIN_UNREACHABLE = 4
EXIT_INCOMPLETE = 5
EXIT_EMPTY = 6
VERDICT_EXIT = {"valid": EXIT_VALID, "pending": EXIT_PENDING, "incomplete": EXIT_INCOMPLETE, "empty": EXIT_EMPTY}


class CheckFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


class ChainUnreachable(Exception):
    """The chain node did not answer: nothing can be concluded, which is not the same as invalid."""


@dataclass(frozen=True)
class ChainKey:
    """What the registry's keyState says about a key fingerprint."""

    state: int  # ids.KEY_*
    kind: int  # ids.SIGNER_*
    signer_id: bytes
    enterprise_id: bytes
    active_from: int
    revoked_at: int | None  # None unless revoked

    def valid_at(self, seq: int | None) -> bool:
        """Whether the key counts for a batch first anchored under checkpoint ``seq`` (None: pending)."""
        return key_valid_at(self.state, self.active_from, self.revoked_at, seq)


@dataclass(frozen=True)
class ChainCheckpoint:
    tree_size: int
    root: bytes
    cid: str


class ChainReader(Protocol):
    """The chain reads a verifier needs, bound to the pinned registry contract."""

    def chain_id(self) -> int: ...

    def has_code(self) -> bool: ...

    def checkpoint_count(self) -> int: ...

    def checkpoint(self, seq: int) -> ChainCheckpoint: ...

    def key(self, fingerprint: bytes) -> ChainKey: ...

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        """The device or gateway ids ever registered to an enterprise, in registration order."""
        ...


class CachedChainReader:
    """Each chain read once per verification run; any transport failure becomes ChainUnreachable."""

    def __init__(self, inner: ChainReader) -> None:
        self.inner = inner
        self._cache: dict[tuple[Any, ...], Any] = {}

    def _get(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = read()
            except (CheckFailed, ChainUnreachable):
                raise
            except Exception as err:  # any failure of the node: report it, do not guess
                raise ChainUnreachable(f"{type(err).__name__}: {err}") from err
        return self._cache[key]

    def chain_id(self) -> int:
        return int(self._get(("chain_id",), self.inner.chain_id))

    def has_code(self) -> bool:
        return bool(self._get(("code",), self.inner.has_code))

    def checkpoint_count(self) -> int:
        return int(self._get(("count",), self.inner.checkpoint_count))

    def checkpoint(self, seq: int) -> ChainCheckpoint:
        result: ChainCheckpoint = self._get(("checkpoint", seq), lambda: self.inner.checkpoint(seq))
        return result

    def key(self, fingerprint: bytes) -> ChainKey:
        result: ChainKey = self._get(("key", fingerprint), lambda: self.inner.key(fingerprint))
        return result

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        result: list[bytes] = self._get(
            ("signers", enterprise_id, kind), lambda: self.inner.signers_of(enterprise_id, kind)
        )
        return result

    def link(self) -> Any:
        """The registry's link in the chain of registries (registry_chain.GENESIS for a reader without links)."""
        from carbontrace_protocol.registry_chain import GENESIS

        link = getattr(self.inner, "link", None)
        return GENESIS if link is None else self._get(("link",), link)

    def at(self, registry: str) -> CachedChainReader:
        """A reader of another registry on the same chain, cached alike."""
        key = ("at", registry)
        if key not in self._cache:
            inner: Any = self.inner  # `at` is only asked of a reader whose link names another registry
            other = inner.at
            self._cache[key] = CachedChainReader(self._get(("reader", registry), lambda: other(registry)))
        result: CachedChainReader = self._cache[key]
        return result


# ---- the report ------------------------------------------------------------------------------------------


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
        if self.status == "invalid":
            return STEP_EXIT.get(self.failed_step or "bundle_format", STEP_EXIT["bundle_format"])
        return VERDICT_EXIT[self.status]

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


def invalid_report(failure: CheckFailed, steps: list[Step], started: float) -> Report:
    steps.append(Step(failure.step, False, failure.detail))
    return Report("invalid", failure.step, failure.detail, [], steps, (time.perf_counter() - started) * 1000)


# ---- pure checks -----------------------------------------------------------------------------------------


_Signed = TypeVar("_Signed", Reading, Flux)


def _device_signed(
    leaf: bytes,
    device_id: str,
    public_key: bytes,
    kind: tuple[int, str, str],
    verify: Callable[[bytes, bytes], _Signed],
) -> _Signed:
    """A device-signed leaf of ``kind`` (its leaf type, and the names of the leaf and of what it signs) verified
    under the device's key and naming that device; CheckFailed at device_signature otherwise."""
    leaf_type, leaf_name, what = kind
    try:
        leaf_kind, body = parse_leaf(leaf)
        if leaf_kind != leaf_type:
            raise CheckFailed("device_signature", f"leaf is not a {leaf_name} leaf")
        signed = verify(body, public_key)
    except ProtocolError as err:
        raise _proof_error("device_signature", err) from err
    if signed.device_id != device_id:
        raise CheckFailed("device_signature", f"the {what} names another device")
    return signed


def _proof_error(step: str, err: Exception) -> CheckFailed:
    return CheckFailed(step, f"{type(err).__name__}: {err}")


def check_chain_identity(bundle: ProofBundle, trust: Trust, chain: ChainReader, linked: bool = False) -> str:
    """With ``linked``, a bundle may name another registry than the pinned one: whether it is in the pinned
    registry's chain of registries is for follow_registries to say."""
    if bundle.chain_id != trust.chain_id or (bundle.registry != trust.registry and not linked):
        raise CheckFailed(
            "chain_identity",
            f"the bundle names registry {bundle.registry} on chain {bundle.chain_id}; "
            f"the trust anchor is {trust.registry} on chain {trust.chain_id}",
        )
    actual = chain.chain_id()
    if actual != trust.chain_id:
        raise CheckFailed("chain_identity", f"the node is chain {actual}, the trust anchor names {trust.chain_id}")
    if not chain.has_code():
        raise CheckFailed("chain_identity", f"no contract at {trust.registry} on this chain")
    return f"chain {trust.chain_id}, registry {trust.registry} (pinned) has code"


def follow_registries(bundle: ProofBundle, trust: Trust, chain: CachedChainReader) -> Any:
    """The chain of registries from the pinned one to the one the bundle names (registry_chain.RegistryChain, a
    ChainReader over all of them). A registry outside that chain fails at chain_identity as before; a link that
    does not hold fails at registry_chain."""
    from carbontrace_protocol import registry_chain  # imports this module's CheckFailed

    try:
        return registry_chain.follow(chain, trust.registry, bundle.registry)
    except registry_chain.NotLinked:
        raise CheckFailed(
            "chain_identity",
            f"the bundle names registry {bundle.registry} on chain {bundle.chain_id}; the trust anchor is "
            f"{trust.registry} on chain {trust.chain_id}, whose chain of registries does not hold it",
        ) from None


def check_key_on_chain(
    step: str, chain: ChainReader, fingerprint: bytes, kind: int, signer: str, seq: int | None
) -> ChainKey:
    """The chain lists ``fingerprint`` as a key of this signer, valid for a batch anchored under ``seq``."""
    record = chain.key(fingerprint)
    what = SIGNER_KIND_NAMES[kind]
    if record.state == KEY_NONE:
        raise CheckFailed(step, f"{what} key {fingerprint.hex()[:16]}… is not registered on chain")
    if record.kind != kind or record.signer_id != chain_id_of(signer):
        raise CheckFailed(step, f"{what} key is registered on chain to another signer, not {what} {signer!r}")
    if not record.valid_at(seq):
        when = "now (pending batch)" if seq is None else f"at checkpoint {seq}"
        revoked = f", revoked at checkpoint {record.revoked_at}" if record.state == KEY_REVOKED else ""
        raise CheckFailed(step, f"{what} key not valid {when}: active from checkpoint {record.active_from}{revoked}")
    return record


@dataclass
class _BatchFacts:
    """A batch's header and gateway key once the gateway_signature step held (computed once per batch)."""

    header: dict[str, Any]
    gateway: ChainKey


@dataclass
class _Anchor:
    size: int
    root: bytes


class _Verifier:
    def __init__(self, bundle: ProofBundle, chain: ChainReader) -> None:
        self.bundle = bundle
        self.chain = chain
        self._batches: dict[str, _BatchFacts | CheckFailed] = {}
        self._anchors: dict[int, _Anchor | CheckFailed] = {}
        self._log: dict[str, CheckFailed | None] = {}

    # -- batch level: the header, its signature and the gateway key, once per batch --
    def batch_header(self, batch: BatchEntry) -> tuple[Any, dict[str, Any]]:
        try:
            message, header = parse_header(batch.signed_header)
        except ProtocolError as err:
            raise _proof_error("batch_inclusion", err) from err
        if batch.batch_id != batch_id(header["gateway"], header["batch_seq"]):
            raise CheckFailed("batch_inclusion", f"batch_id {batch.batch_id!r} is not the signed header's id")
        return message, header

    def batch_facts(self, batch: BatchEntry) -> _BatchFacts:
        cached = self._batches.get(batch.batch_id)
        if cached is None:
            try:
                cached = self._batch_facts(batch)
            except CheckFailed as failure:
                cached = failure
            self._batches[batch.batch_id] = cached
        if isinstance(cached, CheckFailed):
            raise cached
        return cached

    def _batch_facts(self, batch: BatchEntry) -> _BatchFacts:
        message, header = self.batch_header(batch)
        key = self.bundle.key(batch.gateway_key)
        if key.signer != header["gateway"]:
            raise CheckFailed("gateway_signature", "the batch's gateway key belongs to another gateway in the bundle")
        if not verify_es256(key.public_key, message.signed_bytes(), message.signature):
            raise CheckFailed("gateway_signature", "gateway signature on the batch header does not verify")
        record = check_key_on_chain(
            "gateway_signature", self.chain, batch.gateway_key, SIGNER_GATEWAY, header["gateway"], batch.checkpoint_seq
        )
        return _BatchFacts(header, record)

    # -- checkpoint level: signature, cloud key, chain anchor, consistency, once per checkpoint --
    def anchor(self, seq: int) -> _Anchor:
        cached = self._anchors.get(seq)
        if cached is None:
            try:
                cached = self._checkpoint(seq)
            except CheckFailed as failure:
                cached = failure
            self._anchors[seq] = cached
        if isinstance(cached, CheckFailed):
            raise cached
        return cached

    def _checkpoint(self, seq: int) -> _Anchor:
        entry = self.bundle.checkpoint(seq)
        try:
            parsed = signed_checkpoint.parse(entry.signed)
        except ProtocolError as err:
            raise _proof_error("checkpoint_signature", err) from err
        try:
            key = self.bundle.key(parsed.key_fingerprint)
        except KeyError:
            raise CheckFailed("checkpoint_signature", "the checkpoint's kid names no key in the bundle") from None
        if key.kind != "cloud" or key.signer != CLOUD_SIGNER:
            raise CheckFailed("checkpoint_signature", "the checkpoint's kid names a key that is not the cloud's")
        if not verify_es256(key.public_key, parsed.message.signed_bytes(), parsed.message.signature):
            raise CheckFailed("checkpoint_signature", "cloud signature on the checkpoint does not verify")
        check_key_on_chain("checkpoint_signature", self.chain, parsed.key_fingerprint, SIGNER_CLOUD, CLOUD_SIGNER, seq)
        return _Anchor(parsed.tree_size, parsed.root)

    def chain_anchor(self, seq: int, anchor: _Anchor) -> str:
        count = self.chain.checkpoint_count()
        if seq >= count:
            raise CheckFailed("chain_anchor", f"checkpoint {seq} is not anchored on chain ({count} are)")
        onchain = self.chain.checkpoint(seq)
        if (onchain.tree_size, onchain.root) != (anchor.size, anchor.root):
            raise CheckFailed(
                "chain_anchor", f"chain checkpoint {seq} has size {onchain.tree_size}, root {onchain.root.hex()}"
            )
        if onchain.cid != self.bundle.checkpoint(seq).cid:
            raise CheckFailed("chain_anchor", f"the bundle's checkpoint cid is not the chain's ({onchain.cid})")
        return f"chain checkpoint {seq} holds this size, root and cid"

    def consistency(self, seq: int, anchor: _Anchor) -> str:
        entry = self.bundle.checkpoint(seq)
        newest = self.bundle.newest
        assert newest is not None  # the format step requires it when there are checkpoints
        try:
            if seq > 0:
                previous = self.chain.checkpoint(seq - 1)
                merkle.verify_consistency(
                    previous.tree_size, anchor.size, previous.root, anchor.root, list(entry.consistency_from_previous)
                )
            elif entry.consistency_from_previous:
                raise CheckFailed("consistency", "checkpoint 0 has no predecessor to be consistent with")
            count = self.chain.checkpoint_count()
            if newest.seq < seq or newest.seq >= count:
                raise CheckFailed("consistency", f"newest checkpoint {newest.seq} is not anchored at or after {seq}")
            onchain = self.chain.checkpoint(newest.seq)
            if (onchain.tree_size, onchain.root) != (newest.tree_size, newest.root):
                raise CheckFailed("consistency", f"chain checkpoint {newest.seq} differs from the bundle's newest")
            merkle.verify_consistency(
                anchor.size, newest.tree_size, anchor.root, newest.root, list(entry.consistency_to_newest)
            )
        except (ProtocolError, ValueError) as err:
            raise _proof_error("consistency", err) from err
        newer = self.chain.checkpoint_count() - 1 - newest.seq
        later = f"; the chain has {newer} newer checkpoint(s) since the bundle was made" if newer > 0 else ""
        return f"consistent with the previous anchor and with anchor {newest.seq} (size {newest.tree_size}){later}"

    def log_inclusion(self, batch: BatchEntry, anchor: _Anchor) -> None:
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(batch.signed_header), batch.log_index, anchor.size, list(batch.log_proof), anchor.root
            )
        except (ProtocolError, ValueError) as err:
            raise _proof_error("log_inclusion", err) from err

    # -- item level --
    def item(self, index: int, item: ItemEntry) -> ItemResult:
        result = ItemResult(index, item.kind, item.batch_id, item.leaf_index)
        current = ITEM_STEPS[0]

        def passed(step: str, detail: str) -> None:
            result.steps.append(Step(step, True, detail))

        try:
            batch = self.bundle.batch(item.batch_id)
            seq = batch.checkpoint_seq
            device_record: ChainKey | None = None
            if item.kind == views.KIND_READING:
                assert item.device_key is not None  # the format step guarantees it
                key = self.bundle.key(item.device_key)
                current = "device_key"
                if key.signer != item.device_id:
                    raise CheckFailed(current, "the item's device key belongs to another device in the bundle")
                device_record = check_key_on_chain(current, self.chain, item.device_key, SIGNER_DEVICE, key.signer, seq)
                passed(current, "registered to this device on chain, valid when the batch was anchored")
                current = "device_signature"
                reading = self._reading(item.leaf, item.device_id, key.public_key)
                passed(current, "ES256 signature of the device verifies")
                current = "reading_time"
                content = views.reading_content(reading)
                timestamp, detail = reading_time(reading, item.retime_reference, key.public_key)
                content["timestamp"] = timestamp
                passed(current, detail)
            elif item.kind == views.KIND_FLUX:
                assert item.device_key is not None  # the format step guarantees it
                key = self.bundle.key(item.device_key)
                current = "device_key"
                if key.signer != item.device_id:
                    raise CheckFailed(current, "the item's device key belongs to another device in the bundle")
                device_record = check_key_on_chain(current, self.chain, item.device_key, SIGNER_DEVICE, key.signer, seq)
                passed(current, "registered to this device on chain, valid when the batch was anchored")
                current = "device_signature"
                self._flux(item.leaf, item.device_id, key.public_key)
                passed(current, "ES256 signature of the device verifies; the flux follows from its slope and chamber")
                result.steps.append(Step("reading_time", None, "flux leaf: its session is in the signed record"))
                content = {}
            else:
                result.steps.append(Step("device_key", None, "aggregate leaf: signed by the gateway, not a device"))
                result.steps.append(Step("device_signature", None, "aggregate leaf: covered by the gateway signature"))
                result.steps.append(Step("reading_time", None, "aggregate leaf: its window is in the leaf"))
                content = {}
            current = "field_openings"
            detail, opened = self._openings(item)
            passed(current, detail)
            current = "decoded_view"
            kind, decoded = opened or self._content(item.leaf, item.opening_map())
            if kind != item.kind:
                raise CheckFailed(current, f"item says {item.kind}, the leaf is a {kind}")
            content = content or decoded
            try:
                device = views.leaf_device(kind, content)
            except ValueError as err:
                raise CheckFailed(current, str(err)) from err
            if device != item.device_id:
                raise CheckFailed(current, f"item says device {item.device_id!r}, the leaf names {device!r}")
            expected_view = views.view(kind, content, self.bundle.query.types)
            if not views.same_json(item.view, expected_view):
                raise CheckFailed(current, "view is not exactly the leaf's fields for the query's types")
            passed(current, "the view is exactly the leaf's fields for the query's types")
            current = "batch_inclusion"
            _, header = self.batch_header(batch)
            size = leaf_count(header)
            try:
                merkle.verify_inclusion(
                    merkle.leaf_hash(item.leaf), item.leaf_index, size, list(item.batch_proof), header["root"]
                )
            except (ProtocolError, ValueError) as err:
                raise _proof_error(current, err) from err
            passed(current, f"leaf {item.leaf_index} of {size} under the batch root")
            current = "gateway_signature"
            facts = self.batch_facts(batch)
            passed(current, f"batch header signed by gateway {header['gateway']}, its key valid on chain")
            current = "query_match"
            passed(current, self._query_match(item, kind, content, facts, device_record))
            if seq is None:
                result.status = "pending"
                for step in ANCHOR_STEPS:
                    result.steps.append(Step(step, None, "pending: the batch is not under an anchored checkpoint yet"))
                return result
            current = "checkpoint_signature"
            anchor = self.anchor(seq)
            passed(current, f"checkpoint {seq} (size {anchor.size}) signed by a cloud key the chain lists")
            current = "log_inclusion"
            self.log_inclusion(batch, anchor)
            passed(current, f"batch header is log leaf {batch.log_index} of {anchor.size}")
            current = "chain_anchor"
            passed(current, self.chain_anchor(seq, anchor))
            current = "consistency"
            passed(current, self.consistency(seq, anchor))
        except CheckFailed as failure:
            result.status, result.failed_step = "invalid", failure.step
            result.steps.append(Step(failure.step, False, failure.detail))
        return result

    @staticmethod
    def _reading(leaf: bytes, device_id: str, public_key: bytes) -> Reading:
        return _device_signed(leaf, device_id, public_key, (LEAF_READING, "reading", "reading"), verify_reading)

    @staticmethod
    def _flux(leaf: bytes, device_id: str, public_key: bytes) -> None:
        _device_signed(leaf, device_id, public_key, (LEAF_FLUX, "flux", "flux record"), verify_flux)

    def _openings(self, item: ItemEntry) -> tuple[str, tuple[str, dict[str, Any]] | None]:
        """The item opens exactly the committed fields its query's types disclose, each matching: (detail,
        the leaf decoded with its openings, or None when there was nothing to open)."""
        try:
            required = views.fields_to_open(item.leaf, self.bundle.query.types)
        except ProtocolError as err:
            raise _proof_error("field_openings", err) from err
        opened = set(item.opening_map())
        if opened != required:
            raise CheckFailed(
                "field_openings",
                f"the item opens {sorted(opened)}, the query's types disclose exactly {sorted(required)}",
            )
        if not required:
            return "no committed field to open for the query's types", None
        try:
            decoded = views.leaf_content(item.leaf, item.opening_map())
        except disclosure.BadOpening as err:
            raise _proof_error("field_openings", err) from err
        except ProtocolError as err:
            raise _proof_error("decoded_view", err) from err
        return f"{len(required)} field(s) opened, each matching its salted commitment; the rest stay closed", decoded

    @staticmethod
    def _content(leaf: bytes, openings: dict[str, bytes]) -> tuple[str, dict[str, Any]]:
        try:
            return views.leaf_content(leaf, openings)
        except ProtocolError as err:
            raise _proof_error("decoded_view", err) from err

    def _query_match(
        self, item: ItemEntry, kind: str, content: dict[str, Any], facts: _BatchFacts, device: ChainKey | None
    ) -> str:
        query = self.bundle.query
        fail = "query_match"
        if query.enterprise_id is not None:
            wanted = chain_id_of(query.enterprise_id)
            if facts.gateway.enterprise_id != wanted:
                raise CheckFailed(
                    fail, f"the batch's gateway belongs on chain to another enterprise than {query.enterprise_id!r}"
                )
            if device is not None and device.enterprise_id != wanted:
                raise CheckFailed(
                    fail, f"the reading's device belongs on chain to another enterprise than {query.enterprise_id!r}"
                )
        if query.site_id is not None and facts.header["site"] != query.site_id:
            raise CheckFailed(
                fail, f"the batch is of site {facts.header['site']!r}, the query asks for {query.site_id!r}"
            )
        if query.device_id is not None and item.device_id != query.device_id:
            raise CheckFailed(fail, f"the leaf is of device {item.device_id!r}, the query asks for {query.device_id!r}")
        if not views.selects(kind, content, query.types):
            raise CheckFailed(fail, f"the leaf carries none of the types {sorted(t.value for t in query.types)}")
        try:
            start, end = views.leaf_time(kind, content)
        except ValueError as err:
            raise CheckFailed(fail, str(err)) from err
        if (query.start is not None and end <= query.start) or (query.end is not None and start >= query.end):
            raise CheckFailed(fail, f"the leaf's time [{start}, {end}) lies outside the queried period")
        return "enterprise (on chain), site, device, types and period are the query's"


def reading_time(reading: Reading, reference_bytes: bytes | None, public_key: bytes) -> tuple[int | None, str]:
    """(the reading's time, the step's detail): its own, or for an unsynced format-2 reading the time its
    signed reference gives, re-derived here (a time claimed beside the leaf would be the cloud's word). The
    reference must verify under the reading's own device key. Fails at step reading_time."""
    step = "reading_time"
    if not reading.unsynced:
        if reference_bytes is not None:
            raise CheckFailed(step, "a retime_reference on a reading that has a time of its own")
        return reading.timestamp, "the reading carries its own time"
    if reference_bytes is None:
        raise CheckFailed(
            step, f"{NO_REFERENCE}: the reading was taken before its device's time sync and the item carries no "
            "retime_reference to re-time it from"
        )
    try:
        reference = verify_reading(reference_bytes, public_key)
    except ProtocolError as err:
        raise CheckFailed(
            step, f"{BAD_REFERENCE}: the retime_reference does not verify under the item's device key ({err})"
        ) from err
    try:
        timestamp = retimed_timestamp(reading, reference)
    except RetimeRejected as err:
        raise CheckFailed(step, f"{err.reason}: {err}") from err
    return timestamp, (
        f"re-timed to {timestamp} from the device's signed reading seq {reference.seq} of boot {reference.boot} "
        f"(up {reference.up} s at {reference.timestamp})"
    )


def verify_bundle(bundle: ProofBundle, chain: ChainReader, trust: Trust) -> Report:
    """Every check of a parsed proof bundle. Raises ChainUnreachable if the chain cannot be read."""
    started = time.perf_counter()
    cached = chain if isinstance(chain, CachedChainReader) else CachedChainReader(chain)
    steps = [Step("bundle_format", True, f"carbontrace-proof-bundle v{BUNDLE_VERSION}, {len(bundle.items)} item(s)")]
    try:
        steps.append(Step("chain_identity", True, check_chain_identity(bundle, trust, cached, linked=True)))
        registries = follow_registries(bundle, trust, cached)
        if registries.linked:
            steps.append(Step("registry_chain", True, registries.describe()))
    except CheckFailed as failure:
        return invalid_report(failure, steps, started)
    verifier = _Verifier(bundle, registries)
    items = [verifier.item(i, item) for i, item in enumerate(bundle.items)]
    # batches no item points into (statements carry them as evidence of an unbroken chain) are checked too
    referenced = {item.batch_id for item in bundle.items}
    for batch in bundle.batches:
        if batch.batch_id in referenced:
            continue
        try:
            verifier.batch_facts(batch)
            if batch.checkpoint_seq is not None:
                anchor = verifier.anchor(batch.checkpoint_seq)
                verifier.log_inclusion(batch, anchor)
                verifier.chain_anchor(batch.checkpoint_seq, anchor)
                verifier.consistency(batch.checkpoint_seq, anchor)
        except CheckFailed as failure:
            return invalid_report(
                CheckFailed(failure.step, f"batch {batch.batch_id}: {failure.detail}"), steps, started
            )
    return summarize(bundle, items, steps, started)


def summarize(bundle: ProofBundle, items: list[ItemResult], steps: list[Step], started: float) -> Report:
    elapsed = (time.perf_counter() - started) * 1000
    failed = next((i for i in items if i.status == "invalid"), None)
    if failed is not None:
        detail = next((s.detail for s in failed.steps if s.ok is False), "")
        return Report("invalid", failed.failed_step, f"item {failed.index}: {detail}", items, steps, elapsed)
    if bundle.retrieval_failures:
        withheld = sum(1 for f in bundle.retrieval_failures if f.failed_step == WITHHELD_STEP)
        unproven = len(bundle.retrieval_failures) - withheld
        parts = [f"the cloud could not prove {unproven} leaf(s) of the answer"] if unproven else []
        parts += [f"{withheld} leaf(s) withheld from this caller (their format shows fields it may not see)"] * bool(
            withheld
        )
        return Report("incomplete", None, "; ".join(parts), items, steps, elapsed)
    if not items:
        return Report("empty", None, "nothing answers the query", items, steps, elapsed)
    if any(i.status == "pending" for i in items):
        return Report("pending", None, "some batches are not anchored yet", items, steps, elapsed)
    limit = " (the query's limit: there may be more)" if len(items) == bundle.query.limit else ""
    return Report("valid", None, f"{len(items)} item(s) verified{limit}", items, steps, elapsed)


def verify_bundle_json(document: Any, chain: ChainReader, trust: Trust) -> Report:
    """Parse (strictly) and verify; a format error is the bundle_format verdict, not an exception."""
    return _parsed_and_verified(lambda: ProofBundle.from_json(document), chain, trust)


def verify_bundle_cbor(data: bytes, chain: ChainReader, trust: Trust) -> Report:
    """The same for a bundle in its CBOR encoding (docs/proof-bundle.md, "CBOR encoding")."""
    return _parsed_and_verified(lambda: ProofBundle.from_cbor(data), chain, trust)


def _parsed_and_verified(parse: Callable[[], ProofBundle], chain: ChainReader, trust: Trust) -> Report:
    started = time.perf_counter()
    try:
        bundle = parse()
    except BundleFormatError as err:
        return invalid_report(CheckFailed("bundle_format", str(err)), [], started)
    return verify_bundle(bundle, chain, trust)
