"""Trace and verify: locate → retrieve → verify the leaves behind a query, scoped by role and data type.

Locate reads the SQL index (which batches, log positions and anchored checkpoints hold the matching
readings/aggregates). Retrieve re-reads each batch from the content store by CID, recomputes the CID, opens
the sealed blob with the cloud's encryption key (cloud/blob_readers.py), finds the leaf in the blob and checks
that the SQL row says what the leaf says. Verify builds the self-contained
proof bundle (docs/proof-bundle.md) from those bytes and runs the same pure checks as the offline verifier
(carbontrace_protocol/proof_verify.py), with the chain read through cloud/chain.py, never our own DB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol import merkle, registry_chain, views
from carbontrace_protocol import proof_verify as pv
from carbontrace_protocol.batch import Batch as BatchBlob
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.measures import fields_of, measures_in, types_mask
from carbontrace_protocol.proof_bundle import WITHHELD_STEP, ProofBundle, Query, Trust, normalize_address
from carbontrace_protocol.views import AGGREGATE_TYPES, ALL_TYPES, FLUX_TYPES, DataType
from cloud import access_scope, chain_facts, models
from cloud.bundle_builder import build_bundle
from cloud.chain import ContractReverted, RegistryContract, SignerKind, attach_registry
from cloud.ledger import Ledger
from cloud.security import Principal
from cloud.stored_batches import BlobUnreadable, open_stored_batch

# Who may trace which data types of which tenant: cloud/access_scope.py, the one definition.
WITHHELD_CID = "(withheld)"  # what a step's detail says instead of a batch CID the caller may not see


@dataclass(frozen=True)
class TraceQuery:
    enterprise_id: str | None = None
    site_id: str | None = None
    device_id: str | None = None
    start: int | None = None
    end: int | None = None
    types: frozenset[DataType] = ALL_TYPES
    limit: int = 100
    # the fields the caller may not see (access_scope.closed_fields): a leaf showing one in clear is withheld
    closed_fields: frozenset[str] = frozenset()

    def bundle_query(self) -> Query:
        """The query as a bundle names it (carbontrace_protocol.proof_bundle.Query, which the verifier parses)."""
        return Query(self.enterprise_id, self.site_id, self.device_id, self.start, self.end, self.types, self.limit)

    def as_json(self) -> dict[str, Any]:
        return self.bundle_query().to_json()


class RegistryReader:
    """The verifier's ChainReader over the cloud's own chain client (cloud/chain.py contract views).

    `anchored_block` says in which block our database saw a checkpoint mined: a hint for where its event is
    (the event is still accepted only if it opens the on-chain commitment)."""

    def __init__(self, registry: RegistryContract, anchored_block: Callable[[int], int | None] | None = None) -> None:
        self.registry = registry
        self.anchored_block = anchored_block

    def chain_id(self) -> int:
        return self.registry.chain.chain_id

    def has_code(self) -> bool:
        return len(self.registry.chain.w3.eth.get_code(self.registry.contract.address)) > 0

    def checkpoint_count(self) -> int:
        return self.registry.checkpoint_count()

    def checkpoint(self, seq: int) -> pv.ChainCheckpoint:
        hint = self.anchored_block(seq) if self.anchored_block is not None else None
        onchain = self.registry.opened_checkpoint(seq, near_block=hint)  # no block time: not verified
        return pv.ChainCheckpoint(onchain.tree_size, onchain.root, onchain.cid)

    def key(self, fingerprint: bytes) -> pv.ChainKey:
        record = self.registry.key_state(fingerprint)
        return pv.ChainKey(
            int(record.state),
            int(record.kind),
            record.signer_id,
            record.enterprise_id,
            record.active_from,
            record.revoked_at,
        )

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        return self.registry.signers_of(enterprise_id, SignerKind(kind))

    def link(self) -> registry_chain.RegistryLink:
        return protocol_link(self.registry)

    def at(self, address: str) -> RegistryReader:
        """A reader of another registry of the chain of registries (a predecessor or successor)."""
        return RegistryReader(attach_registry(self.registry.chain, address, self.registry.sender))


def protocol_link(registry: RegistryContract) -> registry_chain.RegistryLink:
    """The registry's registryLink() as the verifier takes it; a registry deployed before succession existed
    has no such view and is a first registry."""
    try:
        link = registry.registry_link()
    except ContractReverted:
        return registry_chain.GENESIS
    return registry_chain.RegistryLink(
        registry_chain.address_or_none(link.predecessor),
        link.predecessor_checkpoint_count,
        link.predecessor_tree_size,
        link.predecessor_commitment,
        registry_chain.address_or_none(link.successor),
    )


def trust_of(ledger: Ledger) -> Trust:
    """The trust anchor this cloud publishes (GET /api/v1/trust): an auditor pins it once."""
    registry = ledger.chain.registry()
    return Trust(_chain_id(registry), normalize_address(registry.address))


def _chain_id(registry: RegistryContract) -> int:
    """The registry's chain id, read once per chain connection (chain_facts.chain_id_of)."""
    connection = registry.chain
    return chain_facts.chain_id_of(connection, lambda: connection.chain_id)


def scope(principal: Principal | None, query: TraceQuery, ledger: Ledger, session: Session) -> TraceQuery:
    """The query narrowed to what the caller may see (cloud/access_scope.py DATA_SCOPE); access_scope.Forbidden
    if it asks for more. A platform must name the enterprise it trades for (its scope is one enterprise at a
    time, checked on chain)."""
    types, tenants = access_scope.trace_scope(principal, query.types)
    if tenants in (access_scope.TenantScope.BOUND, access_scope.TenantScope.ASKED) and query.enterprise_id is None:
        raise access_scope.Forbidden()
    ids = access_scope.enterprises_of(session, ledger, principal, tenants, query.enterprise_id)
    return _with(
        query,
        enterprise_id=None if ids is None else ids[0],
        types=types,
        closed_fields=access_scope.closed_fields(principal),
    )


def _with(query: TraceQuery, **changes: Any) -> TraceQuery:
    values = query.__dict__ | changes
    return TraceQuery(**values)


# ---- locate --------------------------------------------------------------------------------------------


@dataclass
class Located:
    kind: str  # "reading" | "aggregate" | "flux"
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
    withheld: str | None = None  # why the caller may not have this leaf (access_scope.withheld_because)

    def as_json(self, principal: Principal | None) -> dict[str, Any]:
        """The located leaf as the caller may see it: the batch CID only if access_scope allows it, and never
        of a leaf withheld from the caller."""
        shows_cid = self.withheld is None and access_scope.may_see_cid(principal, self.enterprise_id)
        return {
            "kind": self.kind,
            "batch_id": self.batch_id,
            "leaf_index": self.leaf_index,
            "device_id": self.device_id,
            "site_id": self.site_id,
            "log_index": self.log_index,
            "cid": self.cid if shows_cid else None,
            "time": self.time,
            "checkpoint_seq": self.checkpoint_seq,
            "anchored": self.checkpoint_seq is not None,
            "withheld": self.withheld,
        }

    def in_clear(self) -> frozenset[str]:
        """The fields this leaf's format shows in clear, from the index (retrieve checks the index against the
        blob; a leaf that does not decode fails there)."""
        if self.kind == views.KIND_READING:
            return fields_of(int(self.indexed["measures"]))
        if self.kind == views.KIND_FLUX:  # its type decides who reaches it (access_scope DATA_SCOPE), whole
            return frozenset()
        return aggregate_in_clear(self.indexed["leaf"])


def aggregate_in_clear(leaf: bytes) -> frozenset[str]:
    """The fields a stored aggregate leaf shows in clear; none for a leaf that does not decode (it is not
    withheld for that: retrieve then fails it, in the open, at the step that checks it)."""
    try:
        return views.fields_in_clear(leaf)
    except ProtocolError:
        return frozenset()


def mark_withheld(located: list[Located], closed: frozenset[str]) -> None:
    """Mark each leaf the caller (who may not see ``closed``) may not have, with the reason."""
    for item in located:
        item.withheld = access_scope.withheld_because(closed, item.in_clear())


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
    reading_mask = types_mask(query.types)
    if reading_mask:
        found += _locate_readings(session, query, reading_mask)
    if query.types & AGGREGATE_TYPES:
        found += _locate_aggregates(session, query)
    if query.types & FLUX_TYPES:
        found += _locate_fluxes(session, query)
    found.sort(key=lambda x: (x.time[0], x.log_index, x.leaf_index))
    found = found[: query.limit]
    attach_checkpoints(session, found, anchored_count)
    mark_withheld(found, query.closed_fields)
    return found


# The columns of a reading row the signed leaf must agree with (measures: computed from the leaf's fields).
READING_INDEX = ("device_id", "seq", "timestamp", "flags", "measures")


def _locate_readings(session: Session, query: TraceQuery, mask: int) -> list[Located]:
    """Readings carrying any measurement in ``mask``: SQL holds which measurements, not their values."""
    R = models.Reading
    stmt = (
        select(R, models.Batch.log_index, models.Batch.cid, models.Batch.site_id, models.Site.enterprise_id)
        .join(models.Batch, models.Batch.id == R.batch_id)
        .join(models.Site, models.Site.id == models.Batch.site_id)
        .where(R.measures.op("&")(mask) != 0, *_tenant_filters(query))
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
        indexed = {name: getattr(row, name) for name in READING_INDEX}
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


def aggregate_rows(query: TraceQuery) -> Any:
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


def located_aggregate(row: models.Aggregate, log_index: int, cid: str, site_id: str, enterprise_id: str) -> Located:
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
    stmt = aggregate_rows(query)
    if query.start is not None:  # windows overlapping [start, end)
        stmt = stmt.where(A.window_end > query.start)
    if query.end is not None:
        stmt = stmt.where(A.window_start < query.end)
    stmt = stmt.order_by(A.window_start, A.batch_id, A.leaf_index).limit(query.limit)
    return [located_aggregate(*row) for row in session.execute(stmt)]


# The columns of a flux row the signed leaf must agree with.
FLUX_INDEX = ("device_id", "first_seq", "last_seq", "session_start", "session_end", "qa")


def _locate_fluxes(session: Session, query: TraceQuery) -> list[Located]:
    """Chamber flux records whose session overlaps [start, end): SQL holds where they are, not their figures."""
    F = models.Flux
    stmt = (
        select(F, models.Batch.log_index, models.Batch.cid, models.Batch.site_id, models.Site.enterprise_id)
        .join(models.Batch, models.Batch.id == F.batch_id)
        .join(models.Site, models.Site.id == models.Batch.site_id)
        .where(*_tenant_filters(query))
    )
    if query.device_id is not None:
        stmt = stmt.where(F.device_id == query.device_id)
    if query.start is not None:
        stmt = stmt.where(F.session_end > query.start)
    if query.end is not None:
        stmt = stmt.where(F.session_start < query.end)
    stmt = stmt.order_by(F.session_start, F.batch_id, F.leaf_index).limit(query.limit)
    return [
        Located(views.KIND_FLUX, row.batch_id, row.leaf_index, row.device_id, site_id, enterprise_id, log_index, cid,
                [row.session_start, row.session_end], {name: getattr(row, name) for name in FLUX_INDEX})
        for row, log_index, cid, site_id, enterprise_id in session.execute(stmt)
    ]


def first_checkpoint(session: Session, log_index: int, anchored_count: int) -> int | None:
    """The first anchored checkpoint whose tree holds log leaf ``log_index`` (None: pending). Tree sizes grow
    with the sequence number, so the first one in sequence order whose size exceeds the leaf index is it; a
    checkpoint counts as anchored only if the chain has it (and our DB says it was sent)."""
    seq: int | None = session.execute(
        select(models.Checkpoint.seq)
        .where(
            models.Checkpoint.anchored.is_(True),
            models.Checkpoint.seq < anchored_count,
            models.Checkpoint.tree_size > log_index,
        )
        .order_by(models.Checkpoint.seq)
        .limit(1)
    ).scalar()
    return seq


def attach_checkpoints(session: Session, located: list[Located], anchored_count: int) -> None:
    found: dict[int, int | None] = {}
    for item in located:
        if item.log_index not in found:
            found[item.log_index] = first_checkpoint(session, item.log_index, anchored_count)
        item.checkpoint_seq = found[item.log_index]


# ---- retrieve ------------------------------------------------------------------------------------------


@dataclass
class Retrieved:
    located: Located
    steps: list[pv.Step] = field(default_factory=list)
    leaf: bytes | None = None
    signed_header: bytes | None = None
    batch_proof: list[bytes] = field(default_factory=list)
    # every field of a committed aggregate, opened from the blob; the bundle carries only those its types disclose
    openings: dict[str, bytes] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    # an unsynced reading's signed reference from the blob's re-timing evidence: the bundle carries it
    retime_reference: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.located.withheld is None and all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> str | None:
        return next((s.step for s in self.steps if s.ok is False), None)


def retrieve(ledger: Ledger, session: Session, located: list[Located]) -> list[Retrieved]:
    """Each located leaf read back from the content store and checked against the SQL index."""
    blobs: dict[str, tuple[BatchBlob | None, str, list[bytes]]] = {}
    out: list[Retrieved] = []
    for item in located:
        if item.withheld is not None:  # never read back: nothing of it leaves the cloud
            out.append(Retrieved(item, [pv.Step(WITHHELD_STEP, None, item.withheld)]))
            continue
        if item.batch_id not in blobs:
            blobs[item.batch_id] = _load_batch(ledger, session, item)
        batch, problem, leaf_hashes = blobs[item.batch_id]
        result = Retrieved(item)
        out.append(result)
        if batch is None:
            result.steps.append(pv.Step("content_store", False, problem))
            continue
        result.steps.append(pv.Step("content_store", True, "batch blob re-read by its CID, CID recomputed"))
        if problem:
            result.steps.append(pv.Step("sql_index", False, problem))
            continue
        if not 0 <= item.leaf_index < len(batch.leaves):
            result.steps.append(pv.Step("sql_index", False, f"leaf {item.leaf_index} is not in the blob"))
            continue
        leaf = batch.leaves[item.leaf_index]
        openings = batch.openings.get(item.leaf_index, {})
        try:  # decoded once: for the index check and for the view
            kind, content = views.leaf_content(leaf, openings)
        except ProtocolError as err:
            result.steps.append(pv.Step("sql_index", False, f"leaf does not decode: {err}"))
            continue
        retimed = batch.retimed.get(item.leaf_index)
        if kind == views.KIND_READING and retimed is not None and content.get("timestamp") is None:
            # the time the reference gives (re-derived at ingest): what the view shows and the verifier re-derives
            content = {**content, "timestamp": retimed[0]}
            result.retime_reference = retimed[1]
        mismatch = _index_mismatch(item, leaf, kind, content)
        if mismatch:
            result.steps.append(pv.Step("sql_index", False, mismatch))
            continue
        result.steps.append(pv.Step("sql_index", True, f"leaf {item.leaf_index} in the blob is what the index says"))
        result.leaf = leaf
        result.signed_header = batch.signed_header
        result.openings = openings
        result.content = content
        result.batch_proof = list(merkle.inclusion_proof(leaf_hashes, item.leaf_index))
    return out


def _load_batch(ledger: Ledger, session: Session, item: Located) -> tuple[BatchBlob | None, str, list[bytes]]:
    """(batch, problem, leaf hashes): batch None when the blob cannot be read back (cloud/stored_batches.py);
    problem non-empty when the blob is fine but the SQL index disagrees with it."""
    try:
        opened = open_stored_batch(ledger, item.batch_id, item.cid)
    except BlobUnreadable as err:
        return None, err.why, []
    batch = opened.batch
    row = session.get(models.Batch, item.batch_id)
    if row is None or row.signed_header != batch.signed_header or row.root != batch.root:
        return batch, "the SQL index's batch header differs from the content store's", []
    if batch.id != item.batch_id:
        return batch, "the blob is another batch", []
    return batch, "", opened.leaf_hashes


def _index_mismatch(item: Located, leaf: bytes, kind: str, content: dict[str, Any]) -> str:
    """What the SQL row says differently from the decoded leaf ("" when they agree). An unsynced reading's
    time is the one its batch's re-timing evidence gives (checked against the signed reference at ingest),
    already in ``content``."""
    if kind != item.kind:
        return f"the index says {item.kind}, the leaf is a {kind}"
    if kind == "reading":
        signed = {**content, "measures": measures_in(content)}
        for name, value in item.indexed.items():
            if signed.get(name) != value:
                return f"SQL reading row field {name!r} differs from the signed leaf"
        return ""
    if kind == views.KIND_FLUX:
        record = {"device_id": content.get("device"), "first_seq": content["seq"][0], "last_seq": content["seq"][1],
                  "session_start": content["session"][0], "session_end": content["session"][1],
                  "qa": content.get("qa")}
        for name, value in item.indexed.items():
            if record.get(name) != value:
                return f"SQL flux row field {name!r} differs from the signed leaf"
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
    """The decoded fields the caller asked for (the leaf itself always stays whole: the proof covers it; of a
    committed aggregate only the fields the types disclose are opened in the bundle)."""
    return views.view(retrieved.located.kind, retrieved.content, types)


# ---- bundle and verify ---------------------------------------------------------------------------------


@dataclass
class TraceAnswer:
    query: TraceQuery
    located: list[Located]
    retrieved: list[Retrieved]
    bundle: ProofBundle | None = None
    report: pv.Report | None = None

    def status(self) -> str:
        if not self.located:
            return "empty"
        failed = any(not r.ok and r.located.withheld is None for r in self.retrieved)
        if failed or (self.report and self.report.status == "invalid"):
            return "invalid"
        if self.report is not None:
            return self.report.status
        return "incomplete" if self.withheld() else "retrieved"

    def withheld(self) -> int:
        """How many located leaves are withheld from the caller (the bundle counts them as retrieval
        failures at step ``withheld``, so its verdict is incomplete, as for any leaf left out)."""
        return sum(1 for item in self.located if item.withheld is not None)

    def items_json(self, principal: Principal | None) -> list[dict[str, Any]]:
        verified = {(r.batch_id, r.leaf_index): r for r in self.report.items} if self.report is not None else {}
        unprovable: dict[tuple[str, int], str] = {}
        if self.bundle is not None:
            unprovable = {(f.batch_id, f.leaf_index): f.failed_step for f in self.bundle.retrieval_failures}
        out = []
        for item in self.retrieved:
            loc = item.located
            entry = loc.as_json(principal)
            entry["view"] = view_of(item, self.query.types) if item.ok else None
            if loc.withheld is not None:  # counted, with its reason: not the leaf, not its CID
                entry |= {"status": WITHHELD_STEP, "failed_step": None, "steps": [s.as_json() for s in item.steps]}
                out.append(entry)
                continue
            steps = list(item.steps)
            status, failed = ("retrieved" if item.ok else "invalid"), item.failed_step
            key = (loc.batch_id, loc.leaf_index)
            if item.ok and key in verified:
                steps += verified[key].steps
                status, failed = verified[key].status, verified[key].failed_step
            elif item.ok and key in unprovable:  # retrieved, but its signing key is not in the key history
                status, failed = "invalid", unprovable[key]
                steps.append(pv.Step(failed, False, "the key that signed this leaf is not in the key history"))
            entry["status"] = status
            entry["failed_step"] = failed
            entry["steps"] = [_step_json(s, loc.cid, entry["cid"] is None) for s in steps]
            out.append(entry)
        return out


def _step_json(step: pv.Step, cid: str, withhold_cid: bool) -> dict[str, Any]:
    """A step as JSON. Retrieval details do not name the batch blob's CID, but a store's error text may: it is
    withheld from a caller who may not see it."""
    shown = step.as_json()
    if withhold_cid:
        shown["detail"] = shown["detail"].replace(cid, WITHHELD_CID)
    return shown


def chain_reader(ledger: Ledger, session: Session | None = None) -> pv.CachedChainReader:
    """The verifier's view of the chain for one request (each read once), over what this process already knows
    to be settled (cloud/chain_facts.py). With ``session``, our own record of anchored checkpoints prompts a
    fresh checkpoint count when it is ahead of the remembered one (a hint to re-read, never a chain answer).
    After a migration it spans the chain of registries (checkpoints before the hand-over are read from the
    predecessor that holds them: carbontrace_protocol/registry_chain.py)."""
    registry = ledger.chain.registry()
    cached = pv.CachedChainReader(_settled_reader(ledger, registry, session))
    chain = registry_chain.follow(cached, normalize_address(registry.address), normalize_address(registry.address))
    return cached if not chain.linked else pv.CachedChainReader(chain)


def _settled_reader(
    ledger: Ledger, registry: RegistryContract, session: Session | None
) -> chain_facts.FinalFactsReader:
    connection, chain_id = registry.chain, _chain_id(registry)
    return chain_facts.FinalFactsReader(
        RegistryReader(registry, (lambda seq: anchored_block(session, seq)) if session is not None else None),
        chain_facts.facts_for(registry.chain, _chain_id(registry), registry.address),
        chain_facts.policy_of(ledger.settings),
        count_at_depth=chain_facts.count_at_depth(registry),
        anchored_hint=anchored_in_db(session) if session is not None else 0,
        facts_of=lambda address: chain_facts.facts_for(connection, chain_id, address),
    )


def anchored_block(session: Session, seq: int) -> int | None:
    """The block our database recorded checkpoint `seq`'s anchor in, if any."""
    return session.execute(select(models.Checkpoint.block_number).where(models.Checkpoint.seq == seq)).scalar()


def anchored_in_db(session: Session) -> int:
    """How many checkpoints our database says are anchored (seq 0 .. n-1)."""
    newest = session.execute(
        select(models.Checkpoint.seq)
        .where(models.Checkpoint.anchored.is_(True))
        .order_by(models.Checkpoint.seq.desc())
        .limit(1)
    ).scalar()
    return 0 if newest is None else int(newest) + 1


def bundle_of(session: Session, answer: TraceAnswer, reader: pv.ChainReader, trust: Trust) -> ProofBundle:
    return build_bundle(session, answer.retrieved, answer.query.bundle_query(), reader, trust.chain_id, trust.registry)


def _retrieved(ledger: Ledger, session: Session, query: TraceQuery, reader: pv.ChainReader) -> TraceAnswer:
    located = locate(session, query, reader.checkpoint_count())
    return TraceAnswer(query, located, retrieve(ledger, session, located))


def trace(ledger: Ledger, session: Session, query: TraceQuery, verify: bool = True) -> TraceAnswer:
    """Locate, retrieve and (with ``verify``) verify; the chain is read through cloud/chain.py."""
    reader = chain_reader(ledger, session)
    answer = _retrieved(ledger, session, query, reader)
    if verify:
        trust = trust_of(ledger)
        answer.bundle = bundle_of(session, answer, reader, trust)
        answer.report = pv.verify_bundle(answer.bundle, reader, trust)
    return answer


def trace_bundle(ledger: Ledger, session: Session, query: TraceQuery) -> dict[str, Any]:
    """The trace answer as the proof bundle a verifier checks offline (one chain reader for both steps)."""
    reader = chain_reader(ledger, session)
    answer = _retrieved(ledger, session, query, reader)
    return bundle_of(session, answer, reader, trust_of(ledger)).to_json()
