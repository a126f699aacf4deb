"""The contractual instruments table (models.ContractualInstrument) read as protocol records
(carbontrace_protocol/instruments.py): for the API that registers them and the statements that use them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol.instruments import Instrument
from cloud import models


def instrument_of(row: models.ContractualInstrument) -> Instrument:
    return Instrument(
        kind=row.kind,
        instrument_id=row.instrument_id,
        issuer=row.issuer,
        site_id=row.site_id,
        volume_wh=row.volume_wh,
        delivery_start=row.delivery_start,
        delivery_end=row.delivery_end,
        rate_e4=row.rate_e4,
        evidence_sha256=row.evidence_sha256,
    )


def overlapping(session: Session, instrument: Instrument) -> models.ContractualInstrument | None:
    """A registered instrument with the same issuer and id whose delivery overlaps (the same energy claimed
    twice), whichever site or enterprise it was registered for."""
    C = models.ContractualInstrument
    return session.scalars(
        select(C).where(
            C.issuer == instrument.issuer,
            C.instrument_id == instrument.instrument_id,
            C.delivery_start < instrument.delivery_end,
            C.delivery_end > instrument.delivery_start,
        ).limit(1)
    ).first()


def instruments_overlapping(
    session: Session, enterprise_id: str, start: int, end: int, site_id: str | None = None
) -> list[Instrument]:
    """The enterprise's instruments (of ``site_id`` only, if given) whose delivery overlaps [start, end), for
    a statement or the console's figures of that period."""
    C = models.ContractualInstrument
    stmt = select(C).where(C.enterprise_id == enterprise_id, C.delivery_start < end, C.delivery_end > start)
    if site_id is not None:
        stmt = stmt.where(C.site_id == site_id)
    return [instrument_of(r) for r in session.scalars(stmt.order_by(C.id))]
