"""Enterprise period statements: the figures of [start, end), signed, with everything that proves them.

The document's format and every check a verifier runs on it are carbontrace_protocol/statement.py; this
module only gathers the evidence: every aggregate leaf received or used in the period (its window or its
energy's measurement time overlaps it), and for each of the enterprise's gateways the unbroken run of batches
from the one open at the period's start to the first that reaches its end, or to the last batch holding one of
those aggregates (so a dropped batch breaks the chain a verifier walks).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from carbontrace_protocol import market_based, p256, restatement, strict_json
from carbontrace_protocol import statement as fmt
from carbontrace_protocol import statement_summary as summary_fmt
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.factor_rule import SiteLocation
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.verify import verify_es256
from carbontrace_protocol.views import DataType, fields_in_clear
from cloud import models
from cloud.access_scope import withheld_because
from cloud.bundle_builder import BundleBuilder
from cloud.content_store import ContentStoreError
from cloud.instrument_records import instruments_overlapping
from cloud.ledger import Ledger
from cloud.signing_key import public_key
from cloud.trace import (
    TraceQuery,
    aggregate_rows,
    attach_checkpoints,
    chain_reader,
    first_checkpoint,
    located_aggregate,
    mark_withheld,
    retrieve,
    trust_of,
)

# A month of 100 devices at 15-minute windows is 288,000 aggregates; the cap bounds one request's memory.
MAX_STATEMENT_AGGREGATES = 300_000
STATEMENT_LIMIT = 2**32  # the bundle query's limit: a statement holds every aggregate of the period


class StatementTooLarge(ValueError):
    pass


def _enterprise_signers(session: Session, enterprise_id: str) -> tuple[list[str], list[str]]:
    """(gateway ids, device ids) of the enterprise, as registered (the verifier compares them with the chain)."""
    in_enterprise = models.Site.enterprise_id == enterprise_id
    gateways = session.scalars(
        select(models.Gateway.id).join(models.Site, models.Site.id == models.Gateway.site_id).where(in_enterprise)
    ).all()
    devices = session.scalars(
        select(models.Device.id).join(models.Site, models.Site.id == models.Device.site_id).where(in_enterprise)
    ).all()
    return sorted(gateways), sorted(devices)


def _chain_batches(
    session: Session, gateway_id: str, start: int, end: int, last_needed: int | None = None
) -> list[models.Batch]:
    """The gateway's batches from the last one that opened at or before ``start`` (or its first batch) to the
    first one that reaches ``end`` (or its newest), or to ``last_needed`` if later: a batch received after
    the period whose aggregates hold energy used in it (buffered through an outage)."""
    B = models.Batch
    of_gateway = B.gateway_id == gateway_id
    opener = session.execute(select(func.max(B.batch_seq)).where(of_gateway, B.window_start <= start)).scalar()
    closer = session.execute(select(func.min(B.batch_seq)).where(of_gateway, B.window_end >= end)).scalar()
    if closer is not None and last_needed is not None:
        closer = max(closer, last_needed)
    stmt = select(B).where(of_gateway)
    if opener is not None:
        stmt = stmt.where(B.batch_seq >= opener)
    if closer is not None:
        stmt = stmt.where(B.batch_seq <= closer)
    return list(session.scalars(stmt.order_by(B.batch_seq)))


def _last_batches(session: Session, located: list[Any]) -> dict[str, int]:
    """Per gateway, the highest batch_seq holding one of the statement's aggregates."""
    batch_ids = sorted({item.batch_id for item in located})
    out: dict[str, int] = {}
    for chunk in range(0, len(batch_ids), 500):
        rows = session.execute(
            select(models.Batch.gateway_id, func.max(models.Batch.batch_seq))
            .where(models.Batch.id.in_(batch_ids[chunk : chunk + 500]))
            .group_by(models.Batch.gateway_id)
        )
        for gateway_id, seq in rows:
            out[gateway_id] = max(out.get(gateway_id, seq), seq)
    return out


def _site_locations(session: Session, enterprise_id: str) -> dict[str, SiteLocation]:
    """Each site of the enterprise at its declared location (the residual mix of its market-based figure)."""
    sites = session.scalars(select(models.Site).where(models.Site.enterprise_id == enterprise_id))
    return {s.id: SiteLocation(s.country, s.province, s.grid_region) for s in sites}


def statement(
    ledger: Ledger, session: Session, enterprise_id: str, start: int, end: int, closed: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The signed statement of ``enterprise_id`` over [start, end) (carbontrace_protocol.statement) for a caller
    who may not see the fields ``closed`` (access_scope.closed_fields): an aggregate leaf that shows one in
    clear is withheld, a retrieval failure like any leaf left out, so the figures leave it out and the
    statement verifies as incomplete."""
    query = TraceQuery(
        enterprise_id=enterprise_id,
        start=start,
        end=end,
        types=frozenset({DataType.AGGREGATES}),
        limit=STATEMENT_LIMIT,
    )
    reader = chain_reader(ledger, session)
    anchored = reader.checkpoint_count()
    A = models.Aggregate
    # every aggregate received or used in the period (views.leaf_time, kept as span_start/span_end)
    rows = session.execute(
        aggregate_rows(query)
        .where(and_(A.span_end > start, A.span_start < end))
        .order_by(A.window_start, A.batch_id, A.leaf_index)
        .limit(MAX_STATEMENT_AGGREGATES + 1)
    )
    located = [located_aggregate(*row) for row in rows]
    if len(located) > MAX_STATEMENT_AGGREGATES:
        raise StatementTooLarge(f"more than {MAX_STATEMENT_AGGREGATES} aggregates in the period: ask for a shorter one")
    attach_checkpoints(session, located, anchored)
    mark_withheld(located, closed)
    trust = trust_of(ledger)
    builder = BundleBuilder(session, query.bundle_query(), reader, trust.chain_id, trust.registry)
    for item in retrieve(ledger, session, located):
        builder.add(item)
    gateways, devices = _enterprise_signers(session, enterprise_id)
    last_needed = _last_batches(session, located)
    for gateway_id in gateways:
        for batch in _chain_batches(session, gateway_id, start, end, last_needed.get(gateway_id)):
            seq = first_checkpoint(session, batch.log_index, anchored)
            builder.add_batch(batch.id, batch.signed_header, batch.log_index, seq)
    kid = builder.add_cloud_key(public_key(ledger.signing_key))
    bundle = builder.bundle()
    issued_at = int(time.time())
    figures, factors, _ = fmt.figures_of(bundle, issued_at)
    bundle_json = bundle.to_json()
    body: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "period": {"start": start, "end": end},
        "issued_at": issued_at,
        "figures": figures,
        "factors": fmt.factor_entries(factors),
        "completeness": fmt.completeness_of(bundle, start, end, gateways, devices),
        "bundle_sha256": hashlib.sha256(strict_json.canonical(bundle_json)).hexdigest(),
        market_based.SECTION_KEY: market_based.section(
            bundle, start, end, issued_at, _site_locations(session, enterprise_id),
            instruments_overlapping(session, enterprise_id, start, end),
        ),
    }
    signature = bytes(p256.sign(ledger.signing_key, strict_json.canonical(body)))
    return {
        "format": fmt.STATEMENT_FORMAT,
        "version": fmt.STATEMENT_VERSION,
        "statement": body,
        "signature": {"alg": "ES256", "kid": kid.hex(), "value": signature.hex()},
        "bundle": bundle_json,
    }


MAX_SUMMARY_PAGES = 1000  # a year of daily pages, or six weeks of hourly ones
MIN_PAGE_S = 60


def statement_summary(
    ledger: Ledger,
    session: Session,
    enterprise_id: str,
    start: int,
    end: int,
    page_s: int = 86_400,
    closed: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The signed period summary of ``enterprise_id`` over [start, end) (carbontrace_protocol.statement_summary):
    one statement per ``page_s`` sub-period, each built, stored in the content store under its CID and
    dropped before the next (memory bounded by a page), then the totals folded from them, signed."""
    if page_s < MIN_PAGE_S:
        raise StatementTooLarge(f"page_s must be at least {MIN_PAGE_S}")
    if -(-(end - start) // page_s) > MAX_SUMMARY_PAGES:
        raise StatementTooLarge(f"more than {MAX_SUMMARY_PAGES} pages: ask for longer pages or a shorter period")
    entries: list[dict[str, Any]] = []
    folded = summary_fmt.CompletenessTotals()
    for page_start in range(start, end, page_s):
        page = statement(ledger, session, enterprise_id, page_start, min(page_start + page_s, end), closed)
        cid, _ = ledger.store.put(summary_fmt.page_bytes(page))
        entries.append(summary_fmt.page_entry(page, cid))
        folded.add(page["statement"]["completeness"])
        del page
    figures = summary_fmt.total_figures(e["figures"] for e in entries)
    body: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "period": {"start": start, "end": end},
        "pages": entries,
        "figures": figures,
        "factors": summary_fmt.total_factors(figures),
        "completeness": folded.to_json(),
    }
    market = summary_fmt.total_market_based(entries)
    if market is not None:
        body[summary_fmt.MARKET_KEY] = market
    kid = key_fingerprint(public_key(ledger.signing_key))
    signature = bytes(p256.sign(ledger.signing_key, strict_json.canonical(body)))
    return {
        "format": summary_fmt.SUMMARY_FORMAT,
        "version": summary_fmt.SUMMARY_VERSION,
        "summary": body,
        "signature": {"alg": "ES256", "kid": kid.hex(), "value": signature.hex()},
    }


def statement_page(ledger: Ledger, cid: str) -> tuple[str, bytes] | None:
    """(enterprise id, stored bytes) of the page named ``cid``, or None if the store holds no statement under
    it (batch blobs share the store and are never served as pages)."""
    try:
        blob = ledger.store.get(cid)
        document = strict_json.loads(blob)
    except (KeyError, ValueError, OSError, ProtocolError, ContentStoreError):
        return None
    if not isinstance(document, dict) or document.get("format") != fmt.STATEMENT_FORMAT:
        return None
    statement_body = document.get("statement")
    if not isinstance(statement_body, dict) or not isinstance(statement_body.get("enterprise_id"), str):
        return None
    return statement_body["enterprise_id"], blob


def page_withholds(blob: bytes, closed: frozenset[str]) -> bool:
    """Whether a stored statement holds a leaf that shows in clear a field of ``closed`` (a page or restatement
    built for a regulator or the enterprise, fetched by another caller): access_scope.withheld_because."""
    try:
        bundle = ProofBundle.from_json(strict_json.loads(blob)["bundle"])
        return any(withheld_because(closed, fields_in_clear(item.leaf)) is not None for item in bundle.items)
    except (KeyError, TypeError, ValueError, ProtocolError):
        return True  # what cannot be read cannot be shown to be safe


class NotOurStatement(ValueError):
    """The document is not a statement this cloud signed for that enterprise (or it was edited)."""


def _check_ours(ledger: Ledger, enterprise_id: str, document: Any) -> None:
    """The statement is well formed, of ``enterprise_id``, signed by this cloud's current key over its body,
    and its bundle is the one the body hashes (the full verification is the verifier's, on both documents)."""
    try:
        body = document["statement"]
        signature = document["signature"]
        ok_format = document["format"] == fmt.STATEMENT_FORMAT and document["version"] == fmt.STATEMENT_VERSION
        kid, value = bytes.fromhex(signature["kid"]), bytes.fromhex(signature["value"])
    except (KeyError, TypeError, ValueError) as err:
        raise NotOurStatement(f"not a {fmt.STATEMENT_FORMAT} document: {err}") from err
    if not ok_format or not isinstance(body, dict) or body.get("enterprise_id") != enterprise_id:
        raise NotOurStatement(f"not a {fmt.STATEMENT_FORMAT} v{fmt.STATEMENT_VERSION} of enterprise {enterprise_id}")
    key = public_key(ledger.signing_key)
    if kid != key_fingerprint(key) or not verify_es256(key, strict_json.canonical(body), value):
        raise NotOurStatement("the statement is not signed by this cloud's current key (or was edited)")
    if body.get("bundle_sha256") != hashlib.sha256(strict_json.canonical(document["bundle"])).hexdigest():
        raise NotOurStatement("the statement's bundle is not the one its body names")


def restate(ledger: Ledger, enterprise_id: str, original: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The restatement of ``original`` (a statement this cloud issued) with the catalogue's newer factors
    (carbontrace_protocol/restatement.py): the same bundle, so the same proven activity data, new figures,
    signed; both documents stored in the content store and the pair recorded. Returns (original CID, restated
    CID, restated document). NothingToRestate when no factor has a newer publication valid today."""
    _check_ours(ledger, enterprise_id, original)
    bundle = ProofBundle.from_json(original["bundle"])
    issued_at = max(int(time.time()), int(original["statement"]["issued_at"]) + 1)
    figures, _, _ = fmt.figures_of(bundle, issued_at)
    body = restatement.restated_body(original, bundle, figures, issued_at, fmt.factor_entries)
    if market_based.SECTION_KEY in body:  # the same sites and instruments, the residual mix valid now
        locations, instruments = market_based.section_inputs(body[market_based.SECTION_KEY])
        period = body["period"]
        body[market_based.SECTION_KEY] = market_based.section(
            bundle, int(period["start"]), int(period["end"]), issued_at, locations, instruments
        )
    signature = bytes(p256.sign(ledger.signing_key, strict_json.canonical(body)))
    document = {
        "format": fmt.STATEMENT_FORMAT,
        "version": fmt.STATEMENT_VERSION,
        "statement": body,
        "signature": {"alg": "ES256", "kid": original["signature"]["kid"], "value": signature.hex()},
        "bundle": original["bundle"],
    }
    original_cid, _ = ledger.store.put(summary_fmt.page_bytes(original))
    restated_cid, _ = ledger.store.put(summary_fmt.page_bytes(document))
    with ledger.session_factory.begin() as session:
        R = models.Restatement
        if session.scalar(select(R.id).where(R.restated_cid == restated_cid)) is not None:
            return original_cid, restated_cid, document  # the same restatement asked again within its second
        session.add(
            models.Restatement(
                enterprise_id=enterprise_id,
                period_start=int(body["period"]["start"]),
                period_end=int(body["period"]["end"]),
                original_cid=original_cid,
                original_sha256=restatement.document_sha256(original),
                restated_cid=restated_cid,
                factor_changes=json.dumps(body[fmt.RESTATEMENT_KEY]["factor_changes"], sort_keys=True),
                issued_at=issued_at,
            )
        )
    return original_cid, restated_cid, document


def restatements_of(session: Session, enterprise_id: str) -> list[dict[str, Any]]:
    """Every restatement of the enterprise, oldest first, with both CIDs (fetch from /statements/pages/{cid})."""
    R = models.Restatement
    rows = session.scalars(select(R).where(R.enterprise_id == enterprise_id).order_by(R.id))
    return [
        {
            "period": {"start": r.period_start, "end": r.period_end},
            "original_cid": r.original_cid,
            "original_sha256": r.original_sha256,
            "restated_cid": r.restated_cid,
            "factor_changes": json.loads(r.factor_changes),
            "issued_at": r.issued_at,
        }
        for r in rows
    ]
