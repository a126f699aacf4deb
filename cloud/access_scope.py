"""Who sees what, decided once: every read rule of the API as two tables and the functions that apply them.

DATA_SCOPE says, per caller (the public, or a key's role) and data type (carbontrace_protocol.views.DataType),
which enterprises' leaves the caller may trace (locate, retrieve, verify, bundle). SURFACE_SCOPE says the same
for the other read surfaces: statements, the console views, batch CIDs and blobs. A tenant scope is one of
TenantScope; NONE answers the one fixed 403. docs/access.md is generated from these tables
(``markdown_tables``) and a test keeps it equal, so the doc cannot drift from what the code enforces.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol import views
from carbontrace_protocol.views import DataType
from cloud import models
from cloud.chain import BindingState
from cloud.ledger import Ledger
from cloud.ledger_chain import chain_id_of
from cloud.security import Principal, Role

PUBLIC = "public"  # the caller without a key
CALLERS: tuple[str, ...] = (PUBLIC, *(r.value for r in Role))


class TenantScope(StrEnum):
    ANY = "any"  # every enterprise
    OWN = "own"  # the key's own enterprise
    ASKED = "asked"  # a platform: enterprises that requested a binding to it (bound on chain or not)
    BOUND = "bound"  # a platform: enterprises bound to it on chain (the chain decides, not the DB mirror)
    NONE = "none"  # nothing: 403


class Surface(StrEnum):
    STATEMENT = "statement"  # statement, statement-summary and their pages
    CONSOLE_ENTERPRISES = "console_enterprises"
    CONSOLE_SITES = "console_sites"  # sites, gateways, devices (and the sites count of an enterprise)
    CONSOLE_EMISSIONS = "console_emissions"
    CONSOLE_BATCHES = "console_batches"  # batch list and the batches counted by the pulse
    BATCH_RECORD = "batch_record"  # GET /batches/{gw}/{seq}
    BATCH_CID = "batch_cid"  # the content-store CID of a batch blob, wherever an answer would name it
    BATCH_BLOB = "batch_blob"  # the stored (sealed) blob itself, and a period's batch list to audit them by
    RESTATE = "restate"  # issue a restatement of a statement with newer factors (POST .../restatements)
    SITE_RECORD = "site_record"  # an enterprise's site list, a site, gateway or device record (cloud/routers/sites.py)
    INSTRUMENT_RECORD = "instrument_record"  # a site's contractual instruments (GET /sites/{id}/instruments)
    INSTRUMENT_REGISTER = "instrument_register"  # register one for a site (POST /sites/{id}/instruments)


_ANY, _OWN, _ASKED, _BOUND, _NONE = (TenantScope.ANY, TenantScope.OWN, TenantScope.ASKED, TenantScope.BOUND,
                                     TenantScope.NONE)
_READINGS = (DataType.CO2, DataType.TEMPERATURE, DataType.HUMIDITY, DataType.ENERGY)


def _row(readings: TenantScope, emissions: TenantScope, aggregates: TenantScope) -> dict[DataType, TenantScope]:
    # a chamber flux record is device data signed in clear (its chamber's temperature among its fields): whoever
    # may trace the device's readings may trace its fluxes, nobody else
    return {**{t: readings for t in _READINGS}, DataType.EMISSIONS: emissions, DataType.AGGREGATES: aggregates,
            DataType.FLUX: readings}


# caller × data type → whose leaves. Aggregates and emissions are public figures; raw readings and chamber fluxes
# are not.
DATA_SCOPE: dict[str, dict[DataType, TenantScope]] = {
    PUBLIC: _row(_NONE, _ANY, _ANY),
    Role.OPERATOR: _row(_NONE, _NONE, _NONE),  # runs the cloud, audits nothing: a regulator does
    Role.REGULATOR: _row(_ANY, _ANY, _ANY),
    Role.ENTERPRISE: _row(_OWN, _OWN, _OWN),
    Role.PLATFORM: _row(_NONE, _BOUND, _NONE),  # trades emissions, for enterprises bound to it on chain
    Role.SITE_ENGINEER: _row(_NONE, _NONE, _NONE),
    Role.GATEWAY: _row(_NONE, _NONE, _NONE),
}

# surface × caller → whose data, in CALLERS order: public, operator, regulator, enterprise, platform,
# site engineer, gateway.
_SURFACES: dict[Surface, tuple[TenantScope, ...]] = {
    # a statement is emissions figures: the emissions column of DATA_SCOPE
    Surface.STATEMENT: tuple(DATA_SCOPE[c][DataType.EMISSIONS] for c in CALLERS),
    Surface.CONSOLE_ENTERPRISES: (_NONE, _ANY, _ANY, _OWN, _ASKED, _OWN, _NONE),
    Surface.CONSOLE_SITES: (_NONE, _ANY, _ANY, _OWN, _NONE, _OWN, _NONE),
    Surface.CONSOLE_EMISSIONS: (_NONE, _ANY, _ANY, _OWN, _BOUND, _OWN, _NONE),
    Surface.CONSOLE_BATCHES: (_NONE, _ANY, _ANY, _OWN, _NONE, _OWN, _NONE),
    # a gateway reads back the batches it uploaded (narrower than its enterprise: cloud/routers/batches.py)
    Surface.BATCH_RECORD: (_NONE, _ANY, _ANY, _OWN, _NONE, _OWN, _OWN),
    # a CID fetches the blob from any IPFS node, so it goes only to who may hold the blob's record; the
    # public and platforms verify without it (a proof bundle carries the signed header, not the CID)
    Surface.BATCH_CID: (_NONE, _ANY, _ANY, _OWN, _NONE, _OWN, _OWN),
    Surface.BATCH_BLOB: (_NONE, _ANY, _ANY, _OWN, _NONE, _NONE, _NONE),
    # restating is the enterprise's own accounting, or a regulator's; a platform or the operator only reads
    Surface.RESTATE: (_NONE, _NONE, _ANY, _OWN, _NONE, _NONE, _NONE),
    # the registry of an enterprise's sites and signers: whoever runs or audits the cloud, and the enterprise's own
    Surface.SITE_RECORD: (_NONE, _ANY, _ANY, _OWN, _NONE, _OWN, _NONE),
    # the certificates and contracts a site's market-based figure rests on: read as its site record; claimed
    # only by the enterprise itself (its purchases, its accounting: not its site engineers, nor a regulator)
    Surface.INSTRUMENT_RECORD: (_NONE, _ANY, _ANY, _OWN, _NONE, _OWN, _NONE),
    Surface.INSTRUMENT_REGISTER: (_NONE, _NONE, _NONE, _OWN, _NONE, _NONE, _NONE),
}
SURFACE_SCOPE: dict[Surface, dict[str, TenantScope]] = {
    surface: dict(zip(CALLERS, row, strict=True)) for surface, row in _SURFACES.items()
}


# The fields a caller may have opened follow from DATA_SCOPE and the protocol's one rule of which types
# disclose which fields (carbontrace_protocol.views): nothing here to keep in step by hand.
READING_FIELDS: tuple[str, ...] = views.READING_FIELDS
AGGREGATE_FIELDS: tuple[str, ...] = (
    *views.AGGREGATE_PUBLIC_FIELDS,
    *(f for fields in views.AGGREGATE_TYPE_FIELDS.values() for f in fields),
)


def field_scope(caller: str, field_name: str) -> TenantScope:
    """Whose values of one field ``caller`` may see: a reading field through the type that carries it; an
    aggregate field through `aggregates`/`emissions`, and a mean (co2, temp_mean, rh_mean) only when its
    measurement type is allowed too (the types that open it, views.aggregate_fields_of)."""
    row = DATA_SCOPE[caller]

    def through(types: list[DataType]) -> TenantScope:
        return next((row[t] for t in types if row[t] != TenantScope.NONE), TenantScope.NONE)

    if field_name in READING_FIELDS:
        return through([t for t, fields in views.READING_TYPE_FIELDS.items() if field_name in fields])
    aggregate = through(sorted(views.AGGREGATE_TYPES))
    if field_name in views.AGGREGATE_PUBLIC_FIELDS:
        return aggregate
    measure = through([t for t, fields in views.AGGREGATE_TYPE_FIELDS.items() if field_name in fields])
    return aggregate if TenantScope.NONE not in (aggregate, measure) else TenantScope.NONE


def closed_fields(principal: Principal | None) -> frozenset[str]:
    """The reading and aggregate fields ``principal`` may see of no tenant (field_scope NONE). A caller's open
    fields share its one tenant scope (_one_tenant_scope_per_caller), which already narrowed whose leaves it
    reaches, so NONE is the only scope that closes a field of a leaf it reaches."""
    return caller_closed_fields(caller_of(principal))


def caller_closed_fields(caller: str) -> frozenset[str]:
    return frozenset(f for f in (*READING_FIELDS, *AGGREGATE_FIELDS) if field_scope(caller, f) == TenantScope.NONE)


def withheld_because(closed: frozenset[str], in_clear: frozenset[str]) -> str | None:
    """Why a leaf whose format shows ``in_clear`` (views.fields_in_clear) is withheld from a caller who may not
    see ``closed`` (closed_fields), or None if it may have the leaf. A leaf cannot be given half: its bytes are
    what its proof covers, so a field its format cannot close (a format 1 aggregate's CO2) withholds it all."""
    shown = sorted(in_clear & closed)
    if not shown:
        return None
    return f"its format shows {', '.join(shown)} in clear, which this caller may not see"


class Forbidden(Exception):
    """The caller may not see this; the API answers 403 with one fixed body, whatever the reason."""


def caller_of(principal: Principal | None) -> str:
    return PUBLIC if principal is None else principal.role.value


def surface_scope(principal: Principal | None, surface: Surface) -> TenantScope:
    return SURFACE_SCOPE[surface][caller_of(principal)]


def roles_for(surface: Surface) -> tuple[Role, ...]:
    """The roles a key must have to use the surface at all (for cloud.deps.require)."""
    return tuple(r for r in Role if SURFACE_SCOPE[surface][r.value] != TenantScope.NONE)


def visible_types(principal: Principal | None) -> frozenset[DataType]:
    """The data types the caller may trace (of some tenant): its default when a query names none."""
    return frozenset(t for t, s in DATA_SCOPE[caller_of(principal)].items() if s != TenantScope.NONE)


def roles_for_types(types: frozenset[DataType]) -> tuple[Role, ...]:
    """The roles a key must have to read data of any of ``types`` at all (for cloud.deps.require)."""
    return tuple(r for r in Role if any(DATA_SCOPE[r.value][t] != TenantScope.NONE for t in types))


def readings_scope(principal: Principal | None) -> tuple[frozenset[DataType], TenantScope]:
    """(reading types, tenant scope) of a raw-readings answer (GET /devices/{id}/readings): the reading types
    the caller may trace, under their one tenant scope; Forbidden if none. A raw reading is the data of its
    measurement types, so this is DATA_SCOPE, not a surface: whoever may not trace a device's CO2 does not get
    it from the readings route either."""
    types = visible_types(principal) & views.READING_TYPES
    if not types:  # an empty query means "every visible type" to trace_scope: refuse here instead
        raise Forbidden()
    return trace_scope(principal, types)


def _one_tenant_scope_per_caller() -> None:
    # A trace query of several types is scoped once, so a caller's visible types must share one tenant scope.
    for caller, row in DATA_SCOPE.items():
        scopes = {s for s in row.values() if s != TenantScope.NONE}
        if len(scopes) > 1:
            raise ValueError(f"DATA_SCOPE[{caller}] mixes tenant scopes {sorted(scopes)}")


_one_tenant_scope_per_caller()


def _batch_answers_may_name_their_cid() -> None:
    # A batch record and a blob answer name the batch's CID, so whoever may read them may see the CID.
    for surface in (Surface.BATCH_RECORD, Surface.BATCH_BLOB):
        for caller, scope in SURFACE_SCOPE[surface].items():
            if scope != TenantScope.NONE and SURFACE_SCOPE[Surface.BATCH_CID][caller] != scope:
                raise ValueError(f"{caller} may read {surface} but not see its CID")


_batch_answers_may_name_their_cid()


def trace_scope(principal: Principal | None, types: frozenset[DataType]) -> tuple[frozenset[DataType], TenantScope]:
    """(types, tenant scope) of a trace query asking for ``types`` (none: all the caller may see)."""
    types = types or visible_types(principal)
    scopes = {DATA_SCOPE[caller_of(principal)][t] for t in types}
    if not types or TenantScope.NONE in scopes:
        raise Forbidden()
    (scope,) = scopes
    return types, scope


def platform_bound(ledger: Ledger, enterprise_id: str, platform_id: str) -> bool:
    """Binding state as the chain holds it (the DB's bindings table is only a mirror)."""
    state = ledger.chain.registry().binding_state(chain_id_of(enterprise_id), chain_id_of(platform_id))
    return state == BindingState.BOUND


def enterprises_of(
    session: Session, ledger: Ledger, principal: Principal | None, scope: TenantScope, wanted: str | None
) -> list[str] | None:
    """Enterprise ids ``scope`` lets the caller see (None: every one), narrowed to ``wanted``; Forbidden if
    ``wanted`` is out of scope or the scope is NONE."""
    if scope == TenantScope.ANY:
        return None if wanted is None else [wanted]
    if principal is None or scope == TenantScope.NONE:
        raise Forbidden()
    if scope == TenantScope.OWN:
        if principal.enterprise_id is None or wanted not in (None, principal.enterprise_id):
            raise Forbidden()
        return [principal.enterprise_id]
    platform_id = principal.platform_id
    if platform_id is None:
        raise Forbidden()
    if scope == TenantScope.BOUND and wanted is not None:  # the chain alone decides
        if not platform_bound(ledger, wanted, platform_id):
            raise Forbidden()
        return [wanted]
    asked = session.scalars(select(models.Binding.enterprise_id).where(models.Binding.platform_id == platform_id))
    allowed = [e for e in asked.all() if scope == TenantScope.ASKED or platform_bound(ledger, e, platform_id)]
    if wanted is None:
        return allowed
    if wanted not in allowed:
        raise Forbidden()
    return [wanted]


def surface_enterprises(
    session: Session, ledger: Ledger, principal: Principal | None, surface: Surface, wanted: str | None = None
) -> list[str] | None:
    return enterprises_of(session, ledger, principal, surface_scope(principal, surface), wanted)


def may_see_enterprise(
    session: Session, ledger: Ledger, principal: Principal | None, surface: Surface, enterprise_id: str
) -> bool:
    try:
        surface_enterprises(session, ledger, principal, surface, enterprise_id)
    except Forbidden:
        return False
    return True


def may_see_own_or_any(principal: Principal | None, surface: Surface, enterprise_id: str) -> bool:
    """Whether ``principal`` may see ``enterprise_id``'s data on a surface that grants only ANY, OWN or NONE
    (no DB or chain read needed). A gateway's OWN is its own uploads: may_see_batch."""
    scope = surface_scope(principal, surface)
    if scope in (TenantScope.ASKED, TenantScope.BOUND):
        raise ValueError(f"{surface} grants {scope}: use surface_enterprises")
    if scope == TenantScope.OWN:
        return principal is not None and principal.enterprise_id == enterprise_id
    return scope == TenantScope.ANY


def may_see_cid(principal: Principal | None, enterprise_id: str) -> bool:
    """Whether an answer may name the CID of a batch blob of ``enterprise_id``."""
    return may_see_own_or_any(principal, Surface.BATCH_CID, enterprise_id)


def may_see_batch(
    principal: Principal | None, surface: Surface, gateway_id: str, enterprise_id: str | None
) -> bool:
    """Whether ``principal`` may read, on ``surface`` (BATCH_RECORD, BATCH_BLOB), a batch that ``gateway_id``
    uploaded for ``enterprise_id`` (None: no such batch). A gateway's own is the batches it uploaded, narrower
    than its enterprise; everyone else's follows the surface's tenant scope."""
    if principal is not None and principal.role == Role.GATEWAY:
        own = surface_scope(principal, surface) == TenantScope.OWN
        return own and principal.gateway_id == gateway_id and enterprise_id is not None
    return enterprise_id is not None and may_see_own_or_any(principal, surface, enterprise_id)


# ---- the tables as a document (docs/access.md) ----------------------------------------------------------


def _markdown(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


DOC_MARKER = "<!-- generated from cloud/access_scope.py: do not edit below by hand -->"


def markdown_tables() -> str:
    """The two tables as docs/access.md shows them (between its generated-table markers)."""
    data = _markdown(
        ["caller", *(t.value for t in DataType)], [[c, *(DATA_SCOPE[c][t].value for t in DataType)] for c in CALLERS]
    )
    surfaces = _markdown(
        ["surface", *CALLERS], [[s.value, *(SURFACE_SCOPE[s][c].value for c in CALLERS)] for s in Surface]
    )
    fields = _markdown(
        ["field", *CALLERS],
        [[f"reading `{f}`", *(field_scope(c, f).value for c in CALLERS)] for f in READING_FIELDS]
        + [[f"aggregate `{f}`", *(field_scope(c, f).value for c in CALLERS)] for f in AGGREGATE_FIELDS],
    )
    leaves = _markdown(
        ["leaf format (fields in clear)", *CALLERS],
        [[name, *("withheld" if withheld_because(caller_closed_fields(c), clear) else "given"
                  for c in CALLERS)] for name, clear in LEAF_FORMATS.items()],
    )
    return "\n".join(["### Data types (trace locate, retrieve, verify, bundle)", "", *data, "",
                      "### Fields (what a proof bundle opens; a closed aggregate field stays a salted commitment)",
                      "", *fields, "",
                      "### Leaves by format (a leaf that shows a closed field in clear is withheld, counted)",
                      "", *leaves, "", "### Surfaces", "", *surfaces]) + "\n"


# each leaf format with the fields it shows in clear (views.fields_in_clear of a full leaf of that format)
LEAF_FORMATS: dict[str, frozenset[str]] = {
    "reading": frozenset(READING_FIELDS),
    "aggregate format 1 (in clear)": frozenset(AGGREGATE_FIELDS),
    "aggregate format 2 (committed)": frozenset(),
}





def document(current: str) -> str:
    """docs/access.md with its generated part (everything after DOC_MARKER) rebuilt from the tables."""
    head, marker, _ = current.partition(DOC_MARKER)
    if not marker:
        raise ValueError(f"docs/access.md has no {DOC_MARKER!r} line")
    return head + DOC_MARKER + "\n\n" + markdown_tables()


if __name__ == "__main__":  # python -m cloud.access_scope: regenerate docs/access.md
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "access.md"
    doc.write_text(document(doc.read_text()))
