"""Trace and verify: locate → retrieve → verify the leaves behind a query, scoped by role and data type.

Locate reads the SQL index (which batches, log positions and anchored checkpoints hold the matching
readings/aggregates). Retrieve re-reads each batch from the content store by CID, recomputes the CID, finds
the leaf in the blob and checks that the SQL row says what the leaf says. Verify builds the self-contained
proof bundle (docs/proof-bundle.md) from those bytes and runs the same pure checks as the offline verifier
(carbontrace/verify_bundle.py), with the chain read through cloud/chain.py, never our own DB.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from carbontrace import verify_bundle as vb
from carbontrace_protocol import merkle, p256
from carbontrace_protocol.batch import Batch as BatchBlob
from carbontrace_protocol.batch import decode_batch, parse_leaf
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.errors import ProofError, ProtocolError
from carbontrace_protocol.proof_bundle import Query, Trust, normalize_address
from carbontrace_protocol.verify import verify_es256
from carbontrace_protocol.views import AGGREGATE_TYPES, ALL_TYPES, EMISSIONS_VIEW, READING_TYPE_FIELDS, DataType
from cloud import models
from cloud.chain import BindingState, RegistryContract, key_fingerprint
from cloud.content_store import ContentStoreError
from cloud.ledger import Ledger
from cloud.ledger_chain import chain_id_of
from cloud.ledger_log import SqlLog
from cloud.security import Principal, Role
from cloud.signing_key import public_key

# Data types, what they select and what a view shows: one definition with the verifier (carbontrace_protocol.views).
PUBLIC_TYPES = AGGREGATE_TYPES
PLATFORM_TYPES = frozenset({DataType.EMISSIONS})
MAX_STATEMENT_AGGREGATES = 5000


class TraceForbidden(Exception):
    """The caller may not see this; the API answers 403 with one fixed body, whatever the reason."""


@dataclass(frozen=True)
class TraceQuery:
    enterprise_id: str | None = None
    site_id: str | None = None
    device_id: str | None = None
    start: int | None = None
    end: int | None = None
    types: frozenset[DataType] = ALL_TYPES
    limit: int = 100

    def as_json(self) -> dict[str, Any]:
        """The query as a bundle names it (carbontrace_protocol.proof_bundle.Query, which the verifier parses)."""
        return Query(
            self.enterprise_id, self.site_id, self.device_id, self.start, self.end, self.types, self.limit
        ).to_json()


class RegistryReader:
    """The verifier's ChainReader over the cloud's own chain client (cloud/chain.py contract views)."""

    def __init__(self, registry: RegistryContract) -> None:
        self.registry = registry

    def chain_id(self) -> int:
        return self.registry.chain.chain_id

    def has_code(self) -> bool:
        return len(self.registry.chain.w3.eth.get_code(self.registry.contract.address)) > 0

    def checkpoint_count(self) -> int:
        return self.registry.checkpoint_count()

    def checkpoint(self, seq: int) -> vb.AnchoredCheckpoint:
        onchain = self.registry.checkpoint(seq)
        return onchain.tree_size, onchain.root, onchain.cid

    def key_state(self, fingerprint: bytes) -> vb.KeyValidity:
        record = self.registry.key_state(fingerprint)
        state, kind = int(record.state), int(record.kind)
        return state, kind, record.signer_id, record.enterprise_id, record.active_from, record.revoked_at


def trust_of(ledger: Ledger) -> Trust:
    """The trust anchor this cloud publishes (GET /api/v1/trust): an auditor pins it once."""
    registry = ledger.chain.registry()
    return Trust(registry.chain.chain_id, normalize_address(registry.address))


def scope(principal: Principal | None, query: TraceQuery, ledger: Ledger) -> TraceQuery:
    """The query narrowed to what the caller may see; TraceForbidden if it asks for more.

    public: aggregates and emissions of anyone; regulator: everything; enterprise: all of its own; trading
    platform: emissions of an enterprise bound to it on chain; operator, site engineer, gateway: nothing."""
    requested = query.types
    if principal is None:
        types = requested or PUBLIC_TYPES
        if not types <= PUBLIC_TYPES:
            raise TraceForbidden()
        return _with(query, types=types)
    if principal.role == Role.REGULATOR:
        return _with(query, types=requested or ALL_TYPES)
    if principal.role == Role.ENTERPRISE:
        if query.enterprise_id not in (None, principal.enterprise_id):
            raise TraceForbidden()
        return _with(query, enterprise_id=principal.enterprise_id, types=requested or ALL_TYPES)
    if principal.role == Role.PLATFORM:
        types = requested or PLATFORM_TYPES
        if not types <= PLATFORM_TYPES or query.enterprise_id is None or principal.platform_id is None:
            raise TraceForbidden()
        if not platform_bound(ledger, query.enterprise_id, principal.platform_id):
            raise TraceForbidden()
        return _with(query, types=types)
    raise TraceForbidden()


def platform_bound(ledger: Ledger, enterprise_id: str, platform_id: str) -> bool:
    """Binding state as the chain holds it (the DB's bindings table is only a mirror)."""
    state = ledger.chain.registry().binding_state(chain_id_of(enterprise_id), chain_id_of(platform_id))
    return state == BindingState.BOUND


def _with(query: TraceQuery, **changes: Any) -> TraceQuery:
    values = query.__dict__ | changes
    return TraceQuery(**values)


# ---- locate --------------------------------------------------------------------------------------------


@dataclass
class Located:
    kind: str  # "reading" | "aggregate"
    batch_id: str
    leaf_index: int
    device_id: str
    site_id: str
    enterprise_id: str
    log_index: int
    cid: str
    time: list[int]  # [timestamp] of a reading, [start, end] of an aggregate window
    indexed: dict[str, Any]  # what the SQL row says about the leaf
    checkpoint_seq: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "batch_id": self.batch_id,
            "leaf_index": self.leaf_index,
            "device_id": self.device_id,
            "site_id": self.site_id,
            "log_index": self.log_index,
            "cid": self.cid,
            "time": self.time,
            "checkpoint_seq": self.checkpoint_seq,
            "anchored": self.checkpoint_seq is not None,
        }


def _tenant_filters(query: TraceQuery) -> list[Any]:
    filters: list[Any] = []
    if query.enterprise_id is not None:
        filters.append(models.Site.enterprise_id == query.enterprise_id)
    if query.site_id is not None:
        filters.append(models.Batch.site_id == query.site_id)
    return filters


def locate(session: Session, query: TraceQuery, anchored_count: int) -> list[Located]:
    """The matching leaves from the SQL index, oldest first, at most ``query.limit`` of them.

    ``anchored_count`` is the chain's checkpoint count: a checkpoint counts as anchored only if the chain
    has it (and our DB says it was sent)."""
    found: list[Located] = []
    reading_fields = [f for t in sorted(query.types) for f in READING_TYPE_FIELDS.get(t, ())]
    if reading_fields:
        found += _locate_readings(session, query, reading_fields)
    if query.types & AGGREGATE_TYPES:
        found += _locate_aggregates(session, query)
    found.sort(key=lambda x: (x.time[0], x.log_index, x.leaf_index))
    found = found[: query.limit]
    _attach_checkpoints(session, found, anchored_count)
    return found


def _locate_readings(session: Session, query: TraceQuery, fields: list[str]) -> list[Located]:
    R = models.Reading
    stmt = (
        select(R, models.Batch.log_index, models.Batch.cid, models.Batch.site_id, models.Site.enterprise_id)
        .join(models.Batch, models.Batch.id == R.batch_id)
        .join(models.Site, models.Site.id == models.Batch.site_id)
        .where(or_(*[getattr(R, f).is_not(None) for f in fields]), *_tenant_filters(query))
    )
    if query.device_id is not None:
        stmt = stmt.where(R.device_id == query.device_id)
    if query.start is not None:
        stmt = stmt.where(R.timestamp >= query.start)
    if query.end is not None:
        stmt = stmt.where(R.timestamp < query.end)
    stmt = stmt.order_by(R.timestamp, R.id).limit(query.limit)
    out = []
    for row, log_index, cid, site_id, enterprise_id in session.execute(stmt):
        indexed = {name: getattr(row, name) for name in ("device_id", "seq", "timestamp", "flags", *vb.READING_FIELDS)}
        out.append(
            Located(
                "reading",
                row.batch_id,
                row.leaf_index,
                row.device_id,
                site_id,
                enterprise_id,
                log_index,
                cid,
                [row.timestamp],
                indexed,
            )
        )
    return out


def _aggregate_statement(query: TraceQuery) -> Any:
    A = models.Aggregate
    stmt = (
        select(A, models.Batch.log_index, models.Batch.cid, models.Batch.site_id, models.Site.enterprise_id)
        .join(models.Batch, models.Batch.id == A.batch_id)
        .join(models.Site, models.Site.id == models.Batch.site_id)
        .where(*_tenant_filters(query))
    )
    if DataType.AGGREGATES not in query.types:
        stmt = stmt.where(A.emissions_g_e4.is_not(None))
    if query.device_id is not None:
        stmt = stmt.where(A.device_id == query.device_id)
    return stmt


def _located_aggregate(row: models.Aggregate, log_index: int, cid: str, site_id: str, enterprise_id: str) -> Located:
    indexed = {
        "leaf": row.leaf,
        "received": row.received,
        "delta_wh": row.delta_wh,
        "emissions_g_e4": row.emissions_g_e4,
        "factor_id": row.factor_id,
        "window": [row.window_start, row.window_end],
    }
    return Located(
        "aggregate",
        row.batch_id,
        row.leaf_index,
        row.device_id,
        site_id,
        enterprise_id,
        log_index,
        cid,
        [row.window_start, row.window_end],
        indexed,
    )


def _locate_aggregates(session: Session, query: TraceQuery) -> list[Located]:
    A = models.Aggregate
    stmt = _aggregate_statement(query)
    if query.start is not None:  # windows overlapping [start, end)
        stmt = stmt.where(A.window_end > query.start)
    if query.end is not None:
        stmt = stmt.where(A.window_start < query.end)
    stmt = stmt.order_by(A.window_start, A.batch_id, A.leaf_index).limit(query.limit)
    return [_located_aggregate(*row) for row in session.execute(stmt)]


def _attach_checkpoints(session: Session, located: list[Located], anchored_count: int) -> None:
    """The first anchored checkpoint that covers each batch's log leaf (None: pending). Tree sizes grow with
    the sequence number, so the first one in sequence order whose size exceeds the leaf index is it."""
    found: dict[int, int | None] = {}
    for item in located:
        if item.log_index not in found:
            found[item.log_index] = session.execute(
                select(models.Checkpoint.seq)
                .where(
                    models.Checkpoint.anchored.is_(True),
                    models.Checkpoint.seq < anchored_count,
                    models.Checkpoint.tree_size > item.log_index,
                )
                .order_by(models.Checkpoint.seq)
                .limit(1)
            ).scalar()
        item.checkpoint_seq = found[item.log_index]


# ---- retrieve ------------------------------------------------------------------------------------------


@dataclass
class Retrieved:
    located: Located
    steps: list[vb.Step] = field(default_factory=list)
    leaf: bytes | None = None
    signed_header: bytes | None = None
    batch_proof: list[bytes] = field(default_factory=list)
    content: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> str | None:
        return next((s.step for s in self.steps if s.ok is False), None)


def retrieve(ledger: Ledger, session: Session, located: list[Located]) -> list[Retrieved]:
    """Each located leaf read back from the content store and checked against the SQL index."""
    blobs: dict[str, tuple[BatchBlob | None, str, list[bytes]]] = {}
    out: list[Retrieved] = []
    for item in located:
        if item.batch_id not in blobs:
            blobs[item.batch_id] = _load_batch(ledger, session, item)
        batch, problem, leaf_hashes = blobs[item.batch_id]
        result = Retrieved(item)
        out.append(result)
        if batch is None:
            result.steps.append(vb.Step("content_store", False, problem))
            continue
        result.steps.append(vb.Step("content_store", True, f"blob {item.cid} re-read, CID recomputed"))
        if problem:
            result.steps.append(vb.Step("sql_index", False, problem))
            continue
        if not 0 <= item.leaf_index < len(batch.leaves):
            result.steps.append(vb.Step("sql_index", False, f"leaf {item.leaf_index} is not in the blob"))
            continue
        leaf = batch.leaves[item.leaf_index]
        mismatch = _index_mismatch(item, leaf)
        if mismatch:
            result.steps.append(vb.Step("sql_index", False, mismatch))
            continue
        result.steps.append(vb.Step("sql_index", True, f"leaf {item.leaf_index} in the blob is what the index says"))
        result.leaf = leaf
        result.signed_header = batch.signed_header
        result.content = vb.leaf_content(leaf)[1]
        result.batch_proof = list(merkle.inclusion_proof(leaf_hashes, item.leaf_index))
    return out


def _load_batch(ledger: Ledger, session: Session, item: Located) -> tuple[BatchBlob | None, str, list[bytes]]:
    """(batch, problem, leaf hashes): batch None when the blob is missing or not what its CID names;
    problem non-empty when the blob is fine but the SQL index disagrees with it."""
    try:
        blob = ledger.store.get(item.cid)
    except (ContentStoreError, KeyError, ValueError) as err:
        return None, f"blob {item.cid}: {type(err).__name__}: {err}", []
    if cid_for(blob) != item.cid:
        return None, f"blob is not {item.cid}", []
    try:
        batch = decode_batch(blob)
    except ProtocolError as err:
        return None, f"blob {item.cid} is not a batch: {err}", []
    row = session.get(models.Batch, item.batch_id)
    if row is None or row.signed_header != batch.signed_header or row.root != batch.root:
        return batch, "the SQL index's batch header differs from the content store's", []
    if batch.id != item.batch_id:
        return batch, "the blob is another batch", []
    return batch, "", batch.leaf_hashes()


def _index_mismatch(item: Located, leaf: bytes) -> str:
    try:
        kind, content = vb.leaf_content(leaf)
    except vb.CheckFailed as err:
        return f"leaf does not decode: {err.detail}"
    if kind != item.kind:
        return f"the index says {item.kind}, the leaf is a {kind}"
    if kind == "reading":
        for name, value in item.indexed.items():
            if content.get(name) != value:
                return f"SQL reading row field {name!r} differs from the signed leaf"
        return ""
    if item.indexed["leaf"] != leaf:
        return "SQL aggregate row's leaf differs from the blob's"
    energy: dict[str, Any] = content["energy"] if isinstance(content.get("energy"), dict) else {}
    factor: dict[str, Any] = content["factor"] if isinstance(content.get("factor"), dict) else {}
    grams: dict[str, Any] = content["emissions_g"] if isinstance(content.get("emissions_g"), dict) else {}
    claims = {
        "received": content.get("received"),
        "delta_wh": energy.get("delta_wh"),
        "emissions_g_e4": grams.get("m"),
        "factor_id": factor.get("id"),
        "window": content.get("window"),
    }
    for name, value in claims.items():
        if item.indexed[name] != value:
            return f"SQL aggregate row field {name!r} differs from the leaf"
    return ""


def view_of(retrieved: Retrieved, types: frozenset[DataType]) -> dict[str, Any]:
    """The decoded fields the caller asked for (the leaf itself always stays whole: the proof covers it)."""
    content = retrieved.content
    if retrieved.located.kind == "reading":
        shown = [f for t in sorted(types) for f in READING_TYPE_FIELDS.get(t, ())]
        return {k: content[k] for k in (*vb.READING_META, *shown) if k in content and content[k] is not None}
    if DataType.AGGREGATES in types:
        return dict(content)
    return {k: content[k] for k in EMISSIONS_VIEW if k in content}


# ---- bundle and verify ---------------------------------------------------------------------------------


def build_bundle(
    ledger: Ledger, session: Session, retrieved: Iterable[Retrieved], query: TraceQuery, reader: vb.ChainReader
) -> dict[str, Any]:
    """The self-contained proof bundle of the retrieved leaves (docs/proof-bundle.md)."""
    registry = ledger.chain.registry()
    log = SqlLog(session)
    count = reader.checkpoint_count()
    newest: dict[str, Any] | None = None
    if count > 0:
        size, root, _cid = reader.checkpoint(count - 1)
        newest = {"seq": count - 1, "tree_size": size, "root": root.hex()}
    devices: dict[str, dict[str, Any]] = {}
    batches: dict[str, dict[str, Any]] = {}
    checkpoints: dict[int, dict[str, Any]] = {}
    items: list[dict[str, Any]] = []
    for item in retrieved:
        if not item.ok or item.leaf is None or item.signed_header is None:
            continue
        loc = item.located
        if loc.kind == "reading" and loc.device_id not in devices:
            device = session.get(models.Device, loc.device_id)
            if device is not None:
                devices[loc.device_id] = {
                    "device_id": device.id,
                    "public_key": device.public_key.hex(),
                    "key_fingerprint": key_fingerprint(device.public_key).hex()
                    if len(device.public_key) == 65 and device.public_key[0] == 4
                    else hashlib.sha256(device.public_key).hexdigest(),
                    "chain_device_id": chain_id_of(device.id).hex(),
                }
        if loc.batch_id not in batches:
            batches[loc.batch_id] = _bundle_batch(session, log, item, loc)
        if loc.checkpoint_seq is not None and loc.checkpoint_seq not in checkpoints:
            checkpoints[loc.checkpoint_seq] = _bundle_checkpoint(session, log, loc.checkpoint_seq, newest, reader)
        items.append(
            {
                "kind": loc.kind,
                "batch_id": loc.batch_id,
                "leaf_index": loc.leaf_index,
                "device_id": loc.device_id,
                "leaf": item.leaf.hex(),
                "batch_proof": [h.hex() for h in item.batch_proof],
                "view": view_of(item, query.types),
            }
        )
    return {
        "format": vb.BUNDLE_FORMAT,
        "version": vb.BUNDLE_VERSION,
        "query": query.as_json(),
        "chain": {"chain_id": reader.chain_id(), "registry": normalize_address(registry.address)},
        "cloud_key": {"kid": vb.CHECKPOINT_KID.decode(), "public_key": public_key(ledger.signing_key).hex()},
        "newest": newest,
        "checkpoints": [checkpoints[s] for s in sorted(checkpoints)],
        "devices": [devices[d] for d in sorted(devices)],
        "batches": [batches[b] for b in sorted(batches)],
        "items": items,
        "retrieval_failures": [retrieval_failure(r) for r in retrieved if not r.ok],
    }


def retrieval_failure(item: Retrieved) -> dict[str, Any]:
    """A leaf the answer should hold but could not be proven: the bundle's verdict is then "incomplete"."""
    loc = item.located
    return {
        "kind": loc.kind,
        "batch_id": loc.batch_id,
        "leaf_index": loc.leaf_index,
        "device_id": loc.device_id,
        "failed_step": item.failed_step or "content_store",
    }


def _safe_proof(build: Any) -> list[str]:
    """A proof from stored log nodes; a missing or out-of-range node leaves it empty, which fails its check."""
    try:
        return [h.hex() for h in build()]
    except (LookupError, ValueError, ProofError):
        return []


def _bundle_batch(session: Session, log: SqlLog, item: Retrieved, loc: Located) -> dict[str, Any]:
    gateway_key = b""
    row = session.get(models.Batch, loc.batch_id)
    if row is not None:
        gateway = session.get(models.Gateway, row.gateway_id)
        gateway_key = gateway.public_key if gateway is not None else b""
    entry: dict[str, Any] = {
        "batch_id": loc.batch_id,
        "signed_header": (item.signed_header or b"").hex(),
        "gateway_public_key": gateway_key.hex(),
        "log_index": loc.log_index,
        "checkpoint_seq": loc.checkpoint_seq,
        "log_proof": [],
    }
    if loc.checkpoint_seq is not None:
        checkpoint = session.get(models.Checkpoint, loc.checkpoint_seq)
        if checkpoint is not None:
            size = checkpoint.tree_size
            entry["log_proof"] = _safe_proof(lambda: log.inclusion_proof(loc.log_index, size))
    return entry


def _bundle_checkpoint(
    session: Session, log: SqlLog, seq: int, newest: dict[str, Any] | None, reader: vb.ChainReader
) -> dict[str, Any]:
    row = session.get(models.Checkpoint, seq)
    assert row is not None  # located from this table
    size = row.tree_size
    entry: dict[str, Any] = {
        "seq": seq,
        "signed": row.signed.hex(),
        "cid": row.cid,
        "consistency_from_previous": [],
        "consistency_to_newest": [],
    }
    if seq > 0:
        previous_size = reader.checkpoint(seq - 1)[0]
        entry["consistency_from_previous"] = _safe_proof(lambda: log.consistency_proof(previous_size, size))
    if newest is not None:
        newest_size = int(newest["tree_size"])
        entry["consistency_to_newest"] = _safe_proof(lambda: log.consistency_proof(size, newest_size))
    return entry


@dataclass
class TraceAnswer:
    query: TraceQuery
    located: list[Located]
    retrieved: list[Retrieved]
    bundle: dict[str, Any] | None = None
    report: vb.Report | None = None

    def status(self) -> str:
        if not self.located:
            return "empty"
        if any(not r.ok for r in self.retrieved) or (self.report and self.report.status == "invalid"):
            return "invalid"
        if self.report is not None:
            return self.report.status
        return "retrieved"

    def items_json(self) -> list[dict[str, Any]]:
        results = iter(self.report.items) if self.report is not None else iter(())
        out = []
        for item in self.retrieved:
            entry = item.located.as_json()
            entry["view"] = view_of(item, self.query.types) if item.ok else None
            steps = list(item.steps)
            status, failed = ("retrieved" if item.ok else "invalid"), item.failed_step
            if item.ok and self.report is not None:
                verified = next(results)
                steps += verified.steps
                status, failed = verified.status, verified.failed_step
            entry["status"] = status
            entry["failed_step"] = failed
            entry["steps"] = [s.as_json() for s in steps]
            out.append(entry)
        return out


def trace(ledger: Ledger, session: Session, query: TraceQuery, verify: bool = True) -> TraceAnswer:
    """Locate, retrieve and (with ``verify``) verify; the chain is read through cloud/chain.py."""
    reader = vb.CachedChainReader(RegistryReader(ledger.chain.registry()))
    located = locate(session, query, reader.checkpoint_count())
    retrieved = retrieve(ledger, session, located)
    answer = TraceAnswer(query, located, retrieved)
    if verify:
        answer.bundle = build_bundle(ledger, session, retrieved, query, reader)
        answer.report = vb.verify_bundle(answer.bundle, reader, trust_of(ledger))
    return answer


def trace_bundle(ledger: Ledger, session: Session, query: TraceQuery) -> dict[str, Any]:
    answer = trace(ledger, session, query, verify=False)
    reader = vb.CachedChainReader(RegistryReader(ledger.chain.registry()))
    return build_bundle(ledger, session, answer.retrieved, query, reader)


# ---- enterprise period statement -------------------------------------------------------------------------


def statement(ledger: Ledger, session: Session, enterprise_id: str, start: int, end: int) -> dict[str, Any]:
    """One signed document: energy, emissions (with factors) and completeness of an enterprise over
    [start, end), with the aggregate leaves each figure sums and their proofs (a proof bundle inside).

    Signature: ES256 by the cloud key over the canonical JSON (sorted keys, no spaces) of ``statement``,
    detached in ``signature`` (docs/proof-bundle.md)."""
    query = TraceQuery(
        enterprise_id=enterprise_id,
        start=start,
        end=end,
        types=frozenset({DataType.AGGREGATES}),
        limit=MAX_STATEMENT_AGGREGATES,
    )
    reader = vb.CachedChainReader(RegistryReader(ledger.chain.registry()))
    A = models.Aggregate
    stmt = (
        _aggregate_statement(query)
        .where(and_(A.window_start >= start, A.window_end <= end))
        .order_by(A.window_start, A.batch_id, A.leaf_index)
        .limit(MAX_STATEMENT_AGGREGATES + 1)
    )
    located = [_located_aggregate(*row) for row in session.execute(stmt)]
    if len(located) > MAX_STATEMENT_AGGREGATES:
        raise ValueError(f"more than {MAX_STATEMENT_AGGREGATES} aggregates in the period: ask for a shorter one")
    _attach_checkpoints(session, located, reader.checkpoint_count())
    retrieved = retrieve(ledger, session, located)
    bundle = build_bundle(ledger, session, retrieved, query, reader)
    figures = vb.statement_figures(bundle)
    factors = []
    for factor_id in figures["emissions_g_e4_by_factor"]:
        try:
            f = get_factor(factor_id)
            factors.append(
                {"id": f.id, "kg_per_kwh_e4": f.kg_per_kwh_e4, "region": f.region, "year": f.year, "source": f.source}
            )
        except KeyError:
            factors.append({"id": factor_id, "kg_per_kwh_e4": None, "region": None, "year": None, "source": None})
    body: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "period": {"start": start, "end": end},
        "issued_at": int(time.time()),
        "figures": figures,
        "units": {"energy_wh": "Wh", "emissions_g_e4": "grams CO2 x 1e-4 (exact integer)"},
        "factors": factors,
        "completeness": {
            "expected_readings": figures["expected_readings"],
            "received_readings": figures["received_readings"],
            "gaps": _gaps(session, enterprise_id, start, end, located),
        },
        "proofs": {
            "note": "every figure is the sum over these bundle items (aggregate leaves), each proven to an anchor",
            "items": list(range(len(bundle["items"]))),
        },
        "retrieval_failures": [r.located.as_json() | {"failed_step": r.failed_step} for r in retrieved if not r.ok],
        "bundle_sha256": hashlib.sha256(vb.canonical_json(bundle)).hexdigest(),
    }
    signed = vb.canonical_json(body)
    signature = _sign_detached(ledger.signing_key, signed)
    return {
        "format": vb.STATEMENT_FORMAT,
        "version": 1,
        "statement": body,
        "signature": {
            "alg": "ES256",
            "kid": vb.CHECKPOINT_KID.decode(),
            "public_key": public_key(ledger.signing_key).hex(),
            "value": signature.hex(),
        },
        "bundle": bundle,
    }


def _sign_detached(private_key: int, message: bytes) -> bytes:
    signature = bytes(p256.sign(private_key, message))
    assert verify_es256(public_key(private_key), message, signature)
    return signature


def _gaps(session: Session, enterprise_id: str, start: int, end: int, located: list[Located]) -> list[dict[str, Any]]:
    """Per device of the enterprise: spans of the period no aggregate window covers, and windows with
    fewer readings than expected."""
    devices = session.scalars(
        select(models.Device.id)
        .join(models.Site, models.Site.id == models.Device.site_id)
        .where(models.Site.enterprise_id == enterprise_id)
        .order_by(models.Device.id)
    ).all()
    by_device: dict[str, list[Located]] = {d: [] for d in devices}
    for item in located:
        by_device.setdefault(item.device_id, []).append(item)
    gaps: list[dict[str, Any]] = []
    for device_id, windows in by_device.items():
        cursor = start
        for item in sorted(windows, key=lambda x: x.time[0]):
            w_start, w_end = item.time
            if w_start > cursor:
                gaps.append({"device_id": device_id, "kind": "no_data", "from": cursor, "to": w_start})
            content = vb.aggregate_json(_cbor_body(item.indexed["leaf"]))
            expected, received = int(content.get("expected", 0)), int(content.get("received", 0))
            if received < expected:
                gaps.append(
                    {
                        "device_id": device_id,
                        "kind": "short_window",
                        "from": w_start,
                        "to": w_end,
                        "expected": expected,
                        "received": received,
                    }
                )
            cursor = max(cursor, w_end)
        if cursor < end:
            gaps.append({"device_id": device_id, "kind": "no_data", "from": cursor, "to": end})
    return gaps


def _cbor_body(leaf: bytes) -> dict[str, Any]:
    try:
        _, body = parse_leaf(leaf)
    except ProtocolError:
        return {}
    return body if isinstance(body, dict) else {}
