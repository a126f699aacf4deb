"""Read endpoints behind the trace console (cloud/console/), and the gateway's health report.

Who sees which view of which tenant is cloud/access_scope.py (SURFACE_SCOPE, docs/access.md): operator and
regulator see every tenant; an enterprise and its site engineers their own; a trading platform the
enterprises that requested a binding to it, and emissions only of those bound to it on chain; a gateway key
sees nothing here but may report its own health. Any refusal is the one fixed 403 body, so nothing says
whether another tenant's thing exists.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carbontrace_protocol import market_based
from carbontrace_protocol.attribution import emissions_figure
from carbontrace_protocol.emission_factors import get_factor, load_catalogue
from carbontrace_protocol.factor_rule import SiteLocation
from carbontrace_protocol.market_based import MarketBasedError
from cloud import access_scope, models
from cloud.access_scope import Surface, roles_for
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.instrument_records import instruments_overlapping
from cloud.ledger import Ledger
from cloud.ledger_chain import chain_id_of
from cloud.params import MAX_TIME, ConsoleLimit, require_period
from cloud.security import Principal, Role
from cloud.site_factors import current_factor, today
from cloud.trace import aggregate_in_clear

router = APIRouter(prefix="/api/v1", tags=["console"])

_ID = r"^[A-Za-z0-9._-]{1,64}$"
_MAX_TIME = MAX_TIME  # cloud/params.py: one bound for every time parameter
MAX_GAPS_PER_DEVICE = 100
# A report's per-device JSON must fit its columns (2000 / 4000 characters) whatever the numbers.
MAX_REPORTED_REASONS = 20
MAX_REPORTED_GAPS = 64
MAX_WINDOWS = 5000
# Everyone who may log into the console polls its pulse (what it counts is scoped like the batch list).
_PULSE_ROLES = roles_for(Surface.CONSOLE_ENTERPRISES)
UNREGISTERED = "_unregistered"  # the gateway's label for senders it does not know (edge_gateway/classify.py)

# ---- gateway health -------------------------------------------------------------------------------------

_Reason = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
_Count = Annotated[int, Field(ge=0, lt=2**63)]


class DeviceHealthIn(BaseModel):
    device: str = Field(pattern=_ID, description='device id, or "_unregistered" for unknown senders')
    rejections: dict[_Reason, _Count] = Field(
        default_factory=dict, max_length=MAX_REPORTED_REASONS, description="rejected readings counted, by reason"
    )
    gaps: list[Annotated[list[_Count], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, max_length=MAX_REPORTED_GAPS, description="missing sequence ranges [lo, hi]"
    )


class GatewayHealthIn(BaseModel):
    devices: list[DeviceHealthIn] = Field(max_length=1000)


class HealthStored(BaseModel):
    gateway_id: str
    devices: int
    reported_at: int


@router.post("/gateways/{gateway_id}/health", response_model=HealthStored)
def report_health(
    gateway_id: str,
    body: GatewayHealthIn,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(Role.GATEWAY))],
) -> HealthStored:
    """Roles: that gateway. Its per-device rejection counters and missing sequence ranges, as it holds them
    now; the report replaces the gateway's previous one (counters are cumulative on the gateway)."""
    if principal.gateway_id != gateway_id:
        raise forbidden()
    now = int(time.time())
    with ledger.session_factory.begin() as session:
        if session.get(models.Gateway, gateway_id) is None:
            raise forbidden()
        session.query(models.DeviceHealth).filter(models.DeviceHealth.gateway_id == gateway_id).delete()
        merged: dict[str, DeviceHealthIn] = {d.device: d for d in body.devices}
        # Always one row per report, so a gateway with nothing to report still shows as having reported.
        merged.setdefault(UNREGISTERED, DeviceHealthIn(device=UNREGISTERED))
        for entry in merged.values():
            gaps = sorted((min(g), max(g)) for g in entry.gaps)
            session.add(
                models.DeviceHealth(
                    gateway_id=gateway_id,
                    device_label=entry.device,
                    rejected=sum(entry.rejections.values()),
                    rejections=json.dumps(entry.rejections, sort_keys=True),
                    missing=sum(hi - lo + 1 for lo, hi in gaps),
                    gaps=json.dumps(gaps),
                    reported_at=now,
                )
            )
    return HealthStored(gateway_id=gateway_id, devices=len(merged), reported_at=now)


# ---- scope ----------------------------------------------------------------------------------------------


def enterprises_in_scope(
    session: Session, ledger: Ledger, principal: Principal, surface: Surface, wanted: str | None = None
) -> list[str] | None:
    """Enterprise ids the caller may see on ``surface`` (None: every one), narrowed to ``wanted``; 403 if out
    of scope (cloud/access_scope.py decides)."""
    try:
        return access_scope.surface_enterprises(session, ledger, principal, surface, wanted)
    except access_scope.Forbidden as err:
        raise forbidden() from err


def _site_filter(ids: list[str] | None) -> list[Any]:
    return [] if ids is None else [models.Site.enterprise_id.in_(ids)]


# ---- who am I -------------------------------------------------------------------------------------------


class WhoAmI(BaseModel):
    role: str
    enterprise_id: str | None
    platform_id: str | None
    gateway_id: str | None


@router.get("/console/me", response_model=WhoAmI)
def whoami(principal: Annotated[Principal, Depends(require(*Role))]) -> WhoAmI:
    """Roles: any key. The role and tenant the key is scoped to (what the console shows is decided by the API)."""
    return WhoAmI(
        role=principal.role.value,
        enterprise_id=principal.enterprise_id,
        platform_id=principal.platform_id,
        gateway_id=principal.gateway_id,
    )


# ---- enterprises and bindings ---------------------------------------------------------------------------


class BindingView(BaseModel):
    platform_id: str
    platform_name: str
    state: str


class EnterpriseView(BaseModel):
    enterprise_id: str
    name: str
    chain_account: str
    sites: int
    bindings: list[BindingView]


@router.get("/console/enterprises", response_model=list[EnterpriseView])
def console_enterprises(
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for(Surface.CONSOLE_ENTERPRISES)))],
) -> list[EnterpriseView]:
    """Roles: operator, regulator (all); enterprise and its site engineers (their own); platform (those that
    asked it for a binding, with only that binding shown). Binding states are read from the chain."""
    ids = enterprises_in_scope(session, ledger, principal, Surface.CONSOLE_ENTERPRISES)
    query = select(models.Enterprise).order_by(models.Enterprise.created_at, models.Enterprise.id)
    if ids is not None:
        query = query.where(models.Enterprise.id.in_(ids))
    registry = ledger.chain.registry()
    sees_sites = access_scope.surface_scope(principal, Surface.CONSOLE_SITES) != access_scope.TenantScope.NONE
    out = []
    for ent in session.scalars(query):
        bindings = select(models.Binding, models.Platform.name).join(
            models.Platform, models.Platform.id == models.Binding.platform_id
        )
        bindings = bindings.where(models.Binding.enterprise_id == ent.id).order_by(models.Binding.platform_id)
        if principal.platform_id is not None:  # a platform sees its own binding, not its competitors'
            bindings = bindings.where(models.Binding.platform_id == principal.platform_id)
        views = [
            BindingView(
                platform_id=b.platform_id,
                platform_name=name,
                state=registry.binding_state(chain_id_of(ent.id), chain_id_of(b.platform_id)).name.lower(),
            )
            for b, name in session.execute(bindings)
        ]
        sites = session.scalar(select(func.count()).select_from(models.Site).where(models.Site.enterprise_id == ent.id))
        out.append(
            EnterpriseView(
                enterprise_id=ent.id,
                name=ent.name,
                chain_account=ent.chain_account,
                sites=int(sites or 0) if sees_sites else 0,
                bindings=views,
            )
        )
    return out


# ---- sites, gateways, devices ---------------------------------------------------------------------------


class FactorView(BaseModel):
    id: str
    kg_per_kwh_e4: int | None
    region: str | None
    year: int | None
    source: str | None


class DeviceView(BaseModel):
    device_id: str
    status: str
    readings: int
    first_seq: int | None
    last_seq: int | None
    last_seen: int | None  # timestamp of the newest stored reading (device clock)
    gaps: list[list[int]]  # missing sequence ranges in the stored readings
    missing: int
    rejected: int | None  # as the gateways last reported (None: no report yet)
    rejections: dict[str, int]
    gateway_gaps: list[list[int]]  # ranges the gateway still misses


class GatewayView(BaseModel):
    gateway_id: str
    batches: int
    last_batch_seq: int | None
    last_batch_at: int | None
    health_reported_at: int | None
    unregistered_rejections: int


class SiteView(BaseModel):
    site_id: str
    enterprise_id: str
    name: str
    factor: FactorView
    gateways: list[GatewayView]
    devices: list[DeviceView]


def factor_view(factor_id: str) -> FactorView:
    try:
        f = get_factor(factor_id)
    except KeyError:
        return FactorView(id=factor_id, kg_per_kwh_e4=None, region=None, year=None, source=None)
    source = f.source.title if f.source.document_number is None else f"{f.source.title}, {f.source.document_number}"
    return FactorView(
        id=f.id, kg_per_kwh_e4=f.kg_per_kwh_e4, region=f.region.name, year=f.reporting_year, source=source
    )


def sequence_gaps(session: Session, device_ids: list[str]) -> dict[str, list[list[int]]]:
    """Missing ranges between consecutive stored sequence numbers, per device (window function, in SQL)."""
    if not device_ids:
        return {}
    R = models.Reading
    following = func.lead(R.seq).over(partition_by=R.device_id, order_by=R.seq).label("next_seq")
    pairs = select(R.device_id, R.seq, following).where(R.device_id.in_(device_ids)).subquery()
    rows = session.execute(
        select(pairs.c.device_id, pairs.c.seq, pairs.c.next_seq)
        .where(pairs.c.next_seq > pairs.c.seq + 1)
        .order_by(pairs.c.device_id, pairs.c.seq)
    )
    out: dict[str, list[list[int]]] = {}
    for device_id, seq, next_seq in rows:
        ranges = out.setdefault(device_id, [])
        if len(ranges) < MAX_GAPS_PER_DEVICE:
            ranges.append([int(seq) + 1, int(next_seq) - 1])
    return out


@router.get("/console/sites", response_model=list[SiteView])
def console_sites(
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for(Surface.CONSOLE_SITES)))],
    enterprise_id: Annotated[str | None, Query(pattern=_ID)] = None,
) -> list[SiteView]:
    """Roles: operator, regulator (all); enterprise and its site engineers (their own). Sites with their
    gateways and devices: status, last seen, gaps in the stored sequence numbers, and the rejection
    counters the site's gateways last reported."""
    ids = enterprises_in_scope(session, ledger, principal, Surface.CONSOLE_SITES, enterprise_id)
    sites = session.scalars(select(models.Site).where(*_site_filter(ids)).order_by(models.Site.id)).all()
    site_ids = [s.id for s in sites]
    devices = session.scalars(
        select(models.Device).where(models.Device.site_id.in_(site_ids)).order_by(models.Device.id)
    ).all()
    device_ids = [d.id for d in devices]
    R = models.Reading
    stats = {
        row[0]: row[1:]
        for row in session.execute(
            select(R.device_id, func.count(), func.min(R.seq), func.max(R.seq), func.max(R.timestamp))
            .where(R.device_id.in_(device_ids))
            .group_by(R.device_id)
        )
    }
    gaps = sequence_gaps(session, device_ids)
    gateways = session.scalars(
        select(models.Gateway).where(models.Gateway.site_id.in_(site_ids)).order_by(models.Gateway.id)
    ).all()
    B = models.Batch
    batch_stats = {
        row[0]: row[1:]
        for row in session.execute(
            select(B.gateway_id, func.count(), func.max(B.batch_seq), func.max(B.received_at))
            .where(B.gateway_id.in_([g.id for g in gateways]))
            .group_by(B.gateway_id)
        )
    }
    gateway_site = {g.id: g.site_id for g in gateways}
    health: dict[str, list[models.DeviceHealth]] = {}
    for row in session.scalars(
        select(models.DeviceHealth).where(models.DeviceHealth.gateway_id.in_(list(gateway_site)))
    ):
        health.setdefault(row.device_label, []).append(row)
    device_site = {d.id: d.site_id for d in devices}
    # A site whose gateways have reported: its devices without a row had nothing to report (0, not unknown).
    reporting_sites = {gateway_site[h.gateway_id] for rows in health.values() for h in rows}

    def device_view(d: models.Device) -> DeviceView:
        count, first, last, seen = stats.get(d.id, (0, None, None, None))
        reports = [h for h in health.get(d.id, []) if gateway_site.get(h.gateway_id) == device_site[d.id]]
        rejections: dict[str, int] = {}
        gateway_gaps: list[list[int]] = []
        for h in reports:
            for reason, n in json.loads(h.rejections).items():
                rejections[reason] = rejections.get(reason, 0) + int(n)
            gateway_gaps += json.loads(h.gaps)
        device_gaps = gaps.get(d.id, [])
        return DeviceView(
            device_id=d.id,
            status=d.status,
            readings=int(count),
            first_seq=first,
            last_seq=last,
            last_seen=seen,
            gaps=device_gaps,
            missing=sum(hi - lo + 1 for lo, hi in device_gaps),
            rejected=sum(h.rejected for h in reports) if reports or d.site_id in reporting_sites else None,
            rejections=rejections,
            gateway_gaps=sorted(gateway_gaps),
        )

    def gateway_view(g: models.Gateway) -> GatewayView:
        count, last_seq, last_at = batch_stats.get(g.id, (0, None, None))
        own = [h for rows in health.values() for h in rows if h.gateway_id == g.id]
        return GatewayView(
            gateway_id=g.id,
            batches=int(count),
            last_batch_seq=last_seq,
            last_batch_at=last_at,
            health_reported_at=max((h.reported_at for h in own), default=None),
            unregistered_rejections=sum(h.rejected for h in own if h.device_label == UNREGISTERED),
        )

    return [
        SiteView(
            site_id=s.id,
            enterprise_id=s.enterprise_id,
            name=s.name,
            factor=factor_view(current_factor(s).id),
            gateways=[gateway_view(g) for g in gateways if g.site_id == s.id],
            devices=[device_view(d) for d in devices if d.site_id == s.id],
        )
        for s in sites
    ]


# ---- emissions over time --------------------------------------------------------------------------------


class EmissionsFigure(BaseModel):
    """Emissions as a statement reports them (carbontrace_protocol/attribution.emissions_figure): exact
    tonnes as text, their unit, gas and accounting method, and the integer grams x 1e-4 underneath."""

    t_co2: str
    unit: str
    gas: str
    method: str
    g_e4: int


class EmissionPoint(BaseModel):
    enterprise_id: str
    site_id: str
    window: list[int]
    emissions_g_e4: int  # grams CO2 x 1e-4, summed over the site's devices in that window
    emissions: EmissionsFigure  # the same, in tCO2 with its method, as the console shows it
    delta_wh: int
    factor_id: str | None
    devices: int


class EmissionSeries(BaseModel):
    factors: dict[str, FactorView]
    points: list[EmissionPoint]
    total: EmissionsFigure  # over the points listed
    # the same energy by the market-based rule (carbontrace_protocol/market_based.py) with the sites'
    # instruments over the period; null when there are no points or no factor for it
    market_based: EmissionsFigure | None
    truncated: bool
    # aggregate leaves left out because this key may not have them (access_scope.withheld_because: their
    # format shows a field it may not see, so trace would withhold them too): the figures above are exactly
    # what this key can verify through trace, never a sum it cannot check
    withheld: int = 0
    withheld_reason: str | None = None


_EmissionKey = tuple[str, str, int, int, str | None]  # enterprise, site, window start, window end, factor


def market_total(
    session: Session, points: list[EmissionPoint], start: int | None, end: int | None
) -> EmissionsFigure | None:
    """The market-based total of the listed points: per site, their energy (the windows' measured delta) under
    the site's instruments' shares of the period ([start, end), or the points' span when not given), the rest
    at the residual mix the rule selects today. A statement's market-based figure attributes energy by
    measurement time and substitutes gaps; this is the console's view of the same rule over its windows."""
    if not points:
        return None
    lo = start if start is not None else min(p.window[0] for p in points)
    hi = end if end is not None else max(p.window[1] for p in points)
    by_site: dict[str, list[EmissionPoint]] = {}
    for point in points:
        by_site.setdefault(point.site_id, []).append(point)
    catalogue, grams = load_catalogue(), 0
    try:
        for site_id, listed in sorted(by_site.items()):
            site = session.get(models.Site, site_id)
            if site is None:
                return None
            wh = sum(p.delta_wh for p in listed)
            energy = market_based.SiteEnergy(wh, wh, frozenset(), max(lo, min(p.window[0] for p in listed)))
            location = SiteLocation(site.country, site.province, site.grid_region)
            instruments = instruments_overlapping(session, site.enterprise_id, lo, hi, site_id)
            entry = market_based.site_entry(site_id, energy, location, instruments, lo, hi, catalogue, today())
            grams += int(entry["emissions"]["g_e4"])
    except MarketBasedError:
        return None
    return EmissionsFigure(**market_based.emissions_figure(grams))


@router.get("/console/emissions", response_model=EmissionSeries)
def console_emissions(
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for(Surface.CONSOLE_EMISSIONS)))],
    enterprise_id: Annotated[str | None, Query(pattern=_ID)] = None,
    site_id: Annotated[str | None, Query(pattern=_ID)] = None,
    start: Annotated[int | None, Query(ge=0, le=_MAX_TIME, description="unix seconds")] = None,
    end: Annotated[int | None, Query(ge=0, le=_MAX_TIME, description="unix seconds")] = None,
) -> EmissionSeries:
    """Roles: operator, regulator (all); enterprise and its site engineers (their own); platform (enterprises
    bound to it on chain). Emissions per site and aggregate window, from the aggregate leaves (emissions_g
    per window), with each emission factor and its source; leaves the caller may not have (trace withholds
    them) are counted in ``withheld`` and not summed."""
    require_period(start, end)
    ids = enterprises_in_scope(session, ledger, principal, Surface.CONSOLE_EMISSIONS, enterprise_id)
    A = models.Aggregate
    filters: list[Any] = [A.emissions_g_e4.is_not(None), *_site_filter(ids)]
    if site_id is not None:
        filters.append(models.Batch.site_id == site_id)
    if start is not None:
        filters.append(A.window_end > start)
    if end is not None:
        filters.append(A.window_start < end)
    closed = access_scope.closed_fields(principal)
    if closed:
        windows, withheld, reason, truncated = _visible_windows(session, filters, closed)
    else:  # the caller may have every leaf it reaches: SQL sums them
        windows, truncated = _summed_windows(session, filters)
        withheld, reason = 0, None
    points = [
        EmissionPoint(
            enterprise_id=ent,
            site_id=site,
            window=[ws, we],
            emissions_g_e4=grams,
            emissions=EmissionsFigure(**emissions_figure(grams)),
            delta_wh=wh,
            factor_id=factor,
            devices=n,
        )
        for (ent, site, ws, we, factor), (grams, wh, n) in windows.items()
    ]
    factors = {p.factor_id: factor_view(p.factor_id) for p in points if p.factor_id is not None}
    total = EmissionsFigure(**emissions_figure(sum(p.emissions_g_e4 for p in points)))
    return EmissionSeries(factors=factors, points=points, total=total,
                          market_based=market_total(session, points, start, end), truncated=truncated,
                          withheld=withheld, withheld_reason=reason)


def _emission_columns() -> tuple[Any, ...]:
    A = models.Aggregate
    return (models.Site.enterprise_id, models.Batch.site_id, A.window_start, A.window_end, A.factor_id)


def _emission_query(columns: tuple[Any, ...], filters: list[Any]) -> Any:
    A = models.Aggregate
    return (
        select(*columns)
        .join(models.Batch, models.Batch.id == A.batch_id)
        .join(models.Site, models.Site.id == models.Batch.site_id)
        .where(*filters)
        .order_by(A.window_start, models.Batch.site_id)
    )


def _summed_windows(session: Session, filters: list[Any]) -> tuple[dict[_EmissionKey, tuple[int, int, int]], bool]:
    A = models.Aggregate
    keys = _emission_columns()
    query = (
        _emission_query((*keys, func.sum(A.emissions_g_e4), func.sum(A.delta_wh), func.count()), filters)
        .group_by(*keys)
        .limit(MAX_WINDOWS + 1)
    )
    rows = session.execute(query).all()
    windows = {
        (ent, site, int(ws), int(we), factor): (int(grams or 0), int(wh or 0), int(n))
        for ent, site, ws, we, factor, grams, wh, n in rows[:MAX_WINDOWS]
    }
    return windows, len(rows) > MAX_WINDOWS


def _visible_windows(
    session: Session, filters: list[Any], closed: frozenset[str]
) -> tuple[dict[_EmissionKey, tuple[int, int, int]], int, str | None, bool]:
    """The windows summed leaf by leaf over the leaves the caller may have (the rule trace applies), the
    number withheld with the first reason, and whether MAX_WINDOWS cut the series."""
    A = models.Aggregate
    query = _emission_query((*_emission_columns(), A.emissions_g_e4, A.delta_wh, A.leaf), filters)
    windows: dict[_EmissionKey, tuple[int, int, int]] = {}
    withheld, reason = 0, None
    for ent, site, ws, we, factor, grams, wh, leaf in session.execute(query.execution_options(yield_per=500)):
        why = access_scope.withheld_because(closed, aggregate_in_clear(leaf))
        if why is not None:
            withheld, reason = withheld + 1, reason or why
            continue
        key = (ent, site, int(ws), int(we), factor)
        if key not in windows and len(windows) == MAX_WINDOWS:
            return windows, withheld, reason, True
        g, w, n = windows.get(key, (0, 0, 0))
        windows[key] = (g + int(grams or 0), w + int(wh or 0), n + 1)
    return windows, withheld, reason, False


# ---- batches and the live pulse -------------------------------------------------------------------------


class BatchView(BaseModel):
    batch_id: str
    gateway_id: str
    site_id: str
    batch_seq: int
    readings: int
    leaves: int
    window: list[int]
    log_index: int
    cid: str | None  # null for a caller who may not see batch CIDs (cloud/access_scope.py)
    received_at: int
    checkpoint_seq: int | None
    tx_hash: str | None
    # Reading leaves kept but not counted (device revoked mid-window); details: GET /batches/{gw}/{seq}.
    quarantined: int = 0


def _scoped_batches(ids: list[str] | None) -> Any:
    B = models.Batch
    return select(B).join(models.Site, models.Site.id == B.site_id).where(*_site_filter(ids))


@router.get("/console/batches", response_model=list[BatchView])
def console_batches(
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(*roles_for(Surface.CONSOLE_BATCHES)))],
    limit: ConsoleLimit = 50,
) -> list[BatchView]:
    """Roles: operator, regulator (all); enterprise and its site engineers (their own). The newest batches,
    each with the first anchored checkpoint whose tree covers its log leaf (None: not anchored yet)."""
    ids = enterprises_in_scope(session, ledger, principal, Surface.CONSOLE_BATCHES)
    B = models.Batch
    rows = session.scalars(_scoped_batches(ids).order_by(B.received_at.desc(), B.log_index.desc()).limit(limit)).all()
    anchored = session.execute(
        select(models.Checkpoint.seq, models.Checkpoint.tree_size, models.Checkpoint.tx_hash)
        .where(models.Checkpoint.anchored.is_(True))
        .order_by(models.Checkpoint.seq)
    ).all()
    Q = models.QuarantinedLeaf
    quarantined = dict(
        session.execute(
            select(Q.batch_id, func.count())
            .where(Q.batch_id.in_([b.id for b in rows]), Q.kind == "reading")
            .group_by(Q.batch_id)
        ).all()
    )
    site_enterprise = dict(
        session.execute(
            select(models.Site.id, models.Site.enterprise_id).where(models.Site.id.in_({b.site_id for b in rows}))
        ).all()
    )
    out = []
    for b in rows:
        covering = next(((int(seq), tx) for seq, size, tx in anchored if size > b.log_index), (None, None))
        out.append(
            BatchView(
                batch_id=b.id,
                gateway_id=b.gateway_id,
                site_id=b.site_id,
                batch_seq=b.batch_seq,
                readings=b.readings,
                leaves=b.leaves,
                window=[b.window_start, b.window_end],
                log_index=b.log_index,
                cid=b.cid if access_scope.may_see_cid(principal, site_enterprise[b.site_id]) else None,
                received_at=b.received_at,
                checkpoint_seq=covering[0],
                tx_hash=covering[1],
                quarantined=int(quarantined.get(b.id, 0)),
            )
        )
    return out


class Pulse(BaseModel):
    batches: int
    last_batch_log_index: int | None
    checkpoints: int
    anchored: int


@router.get("/console/pulse", response_model=Pulse)
def console_pulse(
    ledger: LedgerDep, session: SessionDep, principal: Annotated[Principal, Depends(require(*_PULSE_ROLES))]
) -> Pulse:
    """Roles: operator, regulator, enterprise, site engineer, platform. A cheap change marker the console
    polls: when it moves, the page re-reads its views (batches counted within the caller's scope; a
    platform sees only the log's public figures)."""
    if access_scope.surface_scope(principal, Surface.CONSOLE_BATCHES) == access_scope.TenantScope.NONE:
        count, last = 0, None
    else:
        ids = enterprises_in_scope(session, ledger, principal, Surface.CONSOLE_BATCHES)
        sub = _scoped_batches(ids).subquery()
        count, last = session.execute(select(func.count(), func.max(sub.c.log_index))).one()
    C = models.Checkpoint
    checkpoints, anchored = session.execute(
        select(func.count(), func.count().filter(C.anchored.is_(True))).select_from(C)
    ).one()
    return Pulse(
        batches=int(count),
        last_batch_log_index=last,
        checkpoints=int(checkpoints),
        anchored=int(anchored),
    )
