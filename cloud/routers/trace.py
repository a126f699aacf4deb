"""Trace and verify API: locate → retrieve → verify, proof bundles, enterprise period statements.

Who sees what (the same for every endpoint here) is cloud/access_scope.py, docs/access.md: in short the
public sees aggregates and emissions of anyone; a regulator everything; an enterprise all of its own; a
trading platform the emissions of an enterprise bound to it on chain; operator, site-engineer and gateway
keys get 403. Batch CIDs go only to a regulator and the owning enterprise. Any refusal is one fixed 403
body, so nothing says whether another tenant's thing exists.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from carbontrace_protocol import strict_json
from carbontrace_protocol.market_based import MarketBasedError
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.proof_verify import ChainUnreachable, CheckFailed
from carbontrace_protocol.restatement import NothingToRestate
from carbontrace_protocol.views import DataType
from cloud import access_scope, statements
from cloud import trace as tracelib
from cloud.chain import ChainUnavailable
from cloud.deps import FORBIDDEN, LedgerDep, SessionDep, get_principal
from cloud.ledger import Ledger
from cloud.params import MAX_TIME, Limit, require_period
from cloud.security import Principal

router = APIRouter(prefix="/api/v1", tags=["trace"])

_ID = r"^[A-Za-z0-9._-]{1,64}$"
_MAX_TIME = MAX_TIME  # cloud/params.py: one bound for every time parameter
_FORBIDDEN_RESPONSE: dict[int | str, dict[str, Any]] = {
    403: {"description": "this caller may not see that (same body whether or not it exists)"},
    503: {"description": "the chain node is unreachable; retry"},
}


class StepOut(BaseModel):
    step: str
    ok: bool | None
    detail: str


class LocatedOut(BaseModel):
    kind: str
    batch_id: str
    leaf_index: int
    device_id: str
    site_id: str
    log_index: int
    cid: str | None  # the batch blob's CID; null for a caller who may not see it (cloud/access_scope.py)
    time: list[int]
    checkpoint_seq: int | None
    anchored: bool
    # why this leaf is withheld from the caller (access_scope.withheld_because); null when it is not
    withheld: str | None = None


class TracedOut(LocatedOut):
    view: dict[str, Any] | None
    status: str
    failed_step: str | None
    steps: list[StepOut]


class LocateAnswer(BaseModel):
    query: dict[str, Any]
    count: int
    withheld: int = 0  # items withheld from the caller, counted in ``count``
    items: list[LocatedOut]


class TraceAnswerOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": {"enterprise_id": "ENT-0A1B2C3D4E5F6071", "types": ["co2"], "limit": 100},
                    "status": "valid",
                    "count": 1,
                    "items": [
                        {
                            "kind": "reading",
                            "batch_id": "gw-01/0",
                            "leaf_index": 0,
                            "device_id": "dev-01",
                            "site_id": "site-a",
                            "log_index": 0,
                            "cid": "bafkrei…",
                            "time": [1700000000],
                            "checkpoint_seq": 0,
                            "anchored": True,
                            "view": {"device_id": "dev-01", "seq": 1, "timestamp": 1700000000, "co2_ppm": 600},
                            "status": "valid",
                            "failed_step": None,
                            "steps": [{"step": "content_store", "ok": True, "detail": "blob re-read, CID recomputed"}],
                        }
                    ],
                }
            ]
        }
    )
    query: dict[str, Any]
    status: str  # empty | retrieved | valid | pending | incomplete | invalid
    count: int
    withheld: int = 0  # items withheld from the caller (status "withheld"), counted in ``count``
    items: list[TracedOut]


def _query(
    enterprise_id: Annotated[str | None, Query(pattern=_ID, description="enterprise id")] = None,
    site_id: Annotated[str | None, Query(pattern=_ID)] = None,
    device_id: Annotated[str | None, Query(pattern=_ID)] = None,
    start: Annotated[int | None, Query(ge=0, le=_MAX_TIME, description="unix seconds, inclusive")] = None,
    end: Annotated[int | None, Query(ge=0, le=_MAX_TIME, description="unix seconds, exclusive")] = None,
    types: Annotated[
        list[DataType] | None,
        Query(description="kinds of leaves: co2, temperature, humidity, energy (readings), emissions, aggregates"),
    ] = None,
    limit: Limit = 100,
) -> tracelib.TraceQuery:
    require_period(start, end)
    return tracelib.TraceQuery(enterprise_id, site_id, device_id, start, end, frozenset(types or ()), limit)


QueryDep = Annotated[tracelib.TraceQuery, Depends(_query)]
CallerDep = Annotated[Principal | None, Depends(get_principal)]


def _scoped(
    principal: Principal | None, query: tracelib.TraceQuery, ledger: LedgerDep, session: SessionDep
) -> tracelib.TraceQuery:
    try:
        return tracelib.scope(principal, query, ledger, session)
    except access_scope.Forbidden as err:
        raise HTTPException(403, FORBIDDEN) from err


def _statement_in_scope(principal: Principal | None, enterprise_id: str, ledger: Ledger, session: Session) -> None:
    if not access_scope.may_see_enterprise(session, ledger, principal, access_scope.Surface.STATEMENT, enterprise_id):
        raise HTTPException(403, FORBIDDEN)


@router.get("/trace/locate", response_model=LocateAnswer, responses=_FORBIDDEN_RESPONSE)
def trace_locate(query: QueryDep, principal: CallerDep, ledger: LedgerDep, session: SessionDep) -> LocateAnswer:
    """Roles: public, regulator, enterprise, platform (see module doc). Which batches, log positions and
    anchored checkpoints hold the matching leaves (SQL index only; nothing re-read or verified)."""
    scoped = _scoped(principal, query, ledger, session)
    located = tracelib.locate(session, scoped, tracelib.chain_reader(ledger, session).checkpoint_count())
    items = [LocatedOut(**x.as_json(principal)) for x in located]
    withheld = sum(1 for x in located if x.withheld is not None)
    return LocateAnswer(query=scoped.as_json(), count=len(items), withheld=withheld, items=items)


def _answer(answer: tracelib.TraceAnswer, principal: Principal | None) -> TraceAnswerOut:
    items = answer.items_json(principal)
    return TraceAnswerOut(
        query=answer.query.as_json(),
        status=answer.status(),
        count=len(items),
        withheld=answer.withheld(),
        items=[TracedOut(**x) for x in items],
    )


@router.get("/trace/retrieve", response_model=TraceAnswerOut, responses=_FORBIDDEN_RESPONSE)
def trace_retrieve(query: QueryDep, principal: CallerDep, ledger: LedgerDep, session: SessionDep) -> TraceAnswerOut:
    """Roles: as /trace/locate. Locate, then read each leaf back from the content store (CID recomputed, leaf
    found in the blob, SQL row compared with it); the decoded view shows only the requested fields."""
    scoped = _scoped(principal, query, ledger, session)
    try:
        return _answer(tracelib.trace(ledger, session, scoped, verify=False), principal)
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err


@router.get("/trace/verify", response_model=TraceAnswerOut, responses=_FORBIDDEN_RESPONSE)
def trace_verify(query: QueryDep, principal: CallerDep, ledger: LedgerDep, session: SessionDep) -> TraceAnswerOut:
    """Roles: as /trace/locate. Locate, retrieve and verify every step: device key on chain, device signature,
    batch inclusion, gateway signature, signed checkpoint, log inclusion, the anchor read from the chain, and
    consistency with the previous and the newest anchor. Each item says per step what held; a batch not
    anchored yet is `pending`."""
    scoped = _scoped(principal, query, ledger, session)
    try:
        return _answer(tracelib.trace(ledger, session, scoped), principal)
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err


CBOR_MEDIA_TYPE = "application/cbor"


@router.get(
    "/trace/bundle",
    responses={
        200: {
            "description": "a proof bundle (docs/proof-bundle.md); its CBOR encoding with `encoding=cbor` or "
            "`Accept: application/cbor`",
            "content": {CBOR_MEDIA_TYPE: {}},
        },
        **_FORBIDDEN_RESPONSE,
    },
)
def trace_bundle(
    query: QueryDep,
    principal: CallerDep,
    ledger: LedgerDep,
    session: SessionDep,
    encoding: Annotated[Literal["json", "cbor"] | None, Query(description="json (default) or cbor")] = None,
    accept: Annotated[str, Header()] = "",
) -> Response:
    """Roles: as /trace/locate. The trace answer as a self-contained proof bundle for `carbontrace verify`, as
    JSON or (`encoding=cbor`, or `Accept: application/cbor`) as its compact CBOR encoding."""
    scoped = _scoped(principal, query, ledger, session)
    try:
        bundle = tracelib.trace_bundle(ledger, session, scoped)
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err
    wants_cbor = encoding == "cbor" or (encoding is None and CBOR_MEDIA_TYPE in accept)
    if wants_cbor:  # the same typed bundle, written in its other encoding
        return Response(
            ProofBundle.from_json(bundle).to_cbor(),
            media_type=CBOR_MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="carbontrace-bundle.cbor"'},
        )
    return JSONResponse(bundle, headers={"Content-Disposition": 'attachment; filename="carbontrace-bundle.json"'})


@router.get("/trust", responses={200: {"description": "the trust anchor to pin (docs/proof-bundle.md#trust)"}})
def trust_anchor(ledger: LedgerDep) -> JSONResponse:
    """Roles: anyone (no key). The chain id and registry address a verifier pins once, out of band (compare
    it with what the operator publishes elsewhere), then passes as `carbontrace verify --trust trust.json`."""
    try:
        trust = tracelib.trust_of(ledger)
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err
    return JSONResponse(trust.to_json(), headers={"Content-Disposition": 'attachment; filename="trust.json"'})


@router.get(
    "/enterprises/{enterprise_id}/statement",
    responses={
        200: {"description": "signed statement (docs/proof-bundle.md#statements)"},
        422: {"description": "period invalid or too large"},
        **_FORBIDDEN_RESPONSE,
    },
)
def enterprise_statement(
    enterprise_id: Annotated[str, Path(pattern=_ID)],
    start: Annotated[int, Query(ge=0, le=_MAX_TIME)],
    end: Annotated[int, Query(ge=0, le=_MAX_TIME)],
    principal: CallerDep,
    ledger: LedgerDep,
    session: SessionDep,
) -> JSONResponse:
    """Roles: as /trace/locate (a platform only for an enterprise bound to it). Energy, emissions with their
    factors, completeness and gaps over [start, end), as one document signed by the cloud key (ES256 over the
    canonical JSON of `statement`), with the proof bundle of every aggregate leaf each figure sums. A leaf
    withheld from the caller (cloud/access_scope.py) is not summed: the bundle counts it under
    `retrieval_failures` at step `withheld`, so the statement verifies as incomplete for that caller. Beside
    the location-based figures, `market_based`: market-based Scope 2 with the sites' contractual instruments
    (docs/proof-bundle.md#market-based-scope-2-market_based)."""
    _statement_in_scope(principal, enterprise_id, ledger, session)
    require_period(start, end)
    try:
        document = statements.statement(
            ledger, session, enterprise_id, start, end, access_scope.closed_fields(principal)
        )
    except (statements.StatementTooLarge, MarketBasedError) as err:  # MarketBasedError: no factor for a site
        raise HTTPException(422, str(err)) from err
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err
    return JSONResponse(document)


@router.get(
    "/enterprises/{enterprise_id}/statement-summary",
    responses={
        200: {"description": "signed period summary over statement pages (docs/proof-bundle.md#paged-statements)"},
        422: {"description": "period or page length invalid, or too many pages"},
        **_FORBIDDEN_RESPONSE,
    },
)
def enterprise_statement_summary(
    enterprise_id: Annotated[str, Path(pattern=_ID)],
    start: Annotated[int, Query(ge=0, le=_MAX_TIME)],
    end: Annotated[int, Query(ge=0, le=_MAX_TIME)],
    principal: CallerDep,
    ledger: LedgerDep,
    session: SessionDep,
    page_s: Annotated[int, Query(ge=statements.MIN_PAGE_S, le=_MAX_TIME)] = 86_400,
) -> JSONResponse:
    """Roles: as /enterprises/{id}/statement. The period [start, end) as one statement per `page_s` seconds
    (each stored in the content store; fetch them from /statements/pages/{cid}) and a summary signed by the
    cloud key listing each page's CID, sha256 and figures with the period's totals and completeness."""
    _statement_in_scope(principal, enterprise_id, ledger, session)
    require_period(start, end)
    try:
        document = statements.statement_summary(
            ledger, session, enterprise_id, start, end, page_s, access_scope.closed_fields(principal)
        )
    except (statements.StatementTooLarge, MarketBasedError) as err:  # MarketBasedError: no factor for a site
        raise HTTPException(422, str(err)) from err
    except ChainUnreachable as err:
        raise ChainUnavailable(str(err)) from err
    return JSONResponse(document)


@router.get(
    "/statements/pages/{cid}",
    responses={200: {"description": "one page of a period summary: a signed statement"}, **_FORBIDDEN_RESPONSE},
)
def statement_page(
    cid: Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,128}$")],
    principal: CallerDep,
    ledger: LedgerDep,
    session: SessionDep,
) -> Response:
    """Roles: as /enterprises/{id}/statement, for the enterprise the page is a statement of. The stored page
    named `cid` (a page not held, or held for an enterprise the caller may not see, is the same 403)."""
    page = statements.statement_page(ledger, cid)
    if page is None:
        raise HTTPException(403, FORBIDDEN)
    enterprise_id, blob = page
    _statement_in_scope(principal, enterprise_id, ledger, session)
    # a page built for a regulator or the enterprise may hold leaves withheld from this caller: the same 403
    if statements.page_withholds(blob, access_scope.closed_fields(principal)):
        raise HTTPException(403, FORBIDDEN)
    # the stored bytes as they are: their sha256 and CID are the ones the summary lists
    return Response(
        blob, media_type="application/json", headers={"Content-Disposition": f'attachment; filename="{cid}.json"'}
    )


class RestateRequest(BaseModel):
    """The statement to restate: the CID of a stored one (a summary page, an earlier restatement's original)
    or the signed document itself (the cloud checks it signed it, then stores it)."""

    model_config = ConfigDict(extra="forbid")
    statement_cid: str | None = None
    statement: dict[str, Any] | None = None


@router.post(
    "/enterprises/{enterprise_id}/restatements",
    status_code=201,
    responses={
        201: {"description": "restated statement (docs/proof-bundle.md#restated-statements), stored"},
        409: {"description": "no factor of the statement has a newer publication valid today"},
        422: {"description": "not a statement this cloud signed for that enterprise"},
        **_FORBIDDEN_RESPONSE,
    },
)
def restate_statement(
    enterprise_id: Annotated[str, Path(pattern=_ID)],
    body: RestateRequest,
    principal: CallerDep,
    ledger: LedgerDep,
    session: SessionDep,
) -> JSONResponse:
    """Roles: the enterprise itself, a regulator. Restates a statement with the factor catalogue's newer
    factors: the same proven aggregates (energy), emissions recomputed, naming the original by sha256;
    both stored (GET /statements/pages/{cid}). Answers {original_cid, restated_cid, statement}."""
    if not access_scope.may_see_enterprise(session, ledger, principal, access_scope.Surface.RESTATE, enterprise_id):
        raise HTTPException(403, FORBIDDEN)
    if (body.statement_cid is None) == (body.statement is None):
        raise HTTPException(422, "give exactly one of statement_cid and statement")
    original: Any = body.statement
    if body.statement_cid is not None:
        page = statements.statement_page(ledger, body.statement_cid)
        if page is None or page[0] != enterprise_id:
            raise HTTPException(403, FORBIDDEN)
        original = strict_json.loads(page[1])
    try:
        original_cid, restated_cid, document = statements.restate(ledger, enterprise_id, original)
    except (statements.NotOurStatement, CheckFailed, MarketBasedError) as err:  # a factor not in the catalogue
        raise HTTPException(422, str(err)) from err
    except NothingToRestate as err:
        raise HTTPException(409, str(err)) from err
    return JSONResponse(
        {"original_cid": original_cid, "restated_cid": restated_cid, "statement": document}, status_code=201
    )


@router.get("/enterprises/{enterprise_id}/restatements", responses=_FORBIDDEN_RESPONSE)
def list_restatements(
    enterprise_id: Annotated[str, Path(pattern=_ID)],
    principal: CallerDep,
    ledger: LedgerDep,
    session: SessionDep,
) -> JSONResponse:
    """Roles: as /enterprises/{id}/statement. Every restatement of the enterprise: period, the original's
    and the restated statement's CIDs, the original's sha256, the factor changes, the issue time."""
    _statement_in_scope(principal, enterprise_id, ledger, session)
    return JSONResponse(statements.restatements_of(session, enterprise_id))
