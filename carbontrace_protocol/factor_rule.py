"""Which catalogue factor a site's energy uses: one rule, here, for the cloud that checks aggregates, the
registry that configures gateways and the restatement that recomputes a period.

The rule (docs/accounting.md, "Emission factors"; GHG Protocol Scope 2 Guidance, location-based method: the
most specific published grid factor for where the energy is consumed, subnational before national):
1. only factors of the wanted kind whose ``valid_from`` is on or before the decision date (the aggregate's
   receipt, the statement's issue) and whose reporting year is at or before the activity's year;
2. the most specific region that has one: the site's province, else its regional grid, else its country;
3. within that region, the most recent reporting year.
The activity year is the UTC calendar year of the window's start.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from carbontrace_protocol.emission_factors import (
    KIND_LOCATION,
    LEVEL_COUNTRY,
    LEVEL_GRID,
    LEVEL_PROVINCE,
    Catalogue,
    EmissionFactor,
    as_of,
)
from carbontrace_protocol.errors import ProtocolError


class NoFactor(ProtocolError):
    reason = "no_emission_factor"


class BadLocation(ProtocolError):
    reason = "bad_site_location"


@dataclass(frozen=True)
class SiteLocation:
    country: str  # ISO 3166-1 alpha-2
    province: str | None = None  # ISO 3166-2 code, e.g. CN-HE
    grid_region: str | None = None  # a catalogue grid region code, e.g. CN-GRID-NORTH

    def describe(self) -> str:
        parts = [self.country] + [p for p in (self.province, self.grid_region) if p is not None]
        return "/".join(parts)


def check_location(catalogue: Catalogue, location: SiteLocation) -> None:
    """BadLocation unless each code is a catalogue region of the right level inside the site's country."""
    wanted = (
        (location.country, LEVEL_COUNTRY),
        (location.province, LEVEL_PROVINCE),
        (location.grid_region, LEVEL_GRID),
    )
    for code, level in wanted:
        if code is None:
            continue
        region = catalogue.regions.get(code)
        if region is None or region.level != level or region.country != location.country:
            known = sorted(r.code for r in catalogue.regions.values() if r.level == level)
            raise BadLocation(f"{code!r} is not a {level} of {location.country} in the catalogue; known: {known}")


def activity_year(window_start: int) -> int:
    return datetime.datetime.fromtimestamp(window_start, datetime.UTC).year


def select_factor(
    catalogue: Catalogue,
    location: SiteLocation,
    year: int,
    on: datetime.date,
    kind: str = KIND_LOCATION,
) -> EmissionFactor:
    """The factor the rule gives a site at ``location`` for activity in ``year``, decided on ``on``."""
    usable = [
        f for f in catalogue.factors.values() if f.kind == kind and f.valid_from <= on and f.reporting_year <= year
    ]
    for code in (location.province, location.grid_region, location.country):
        if code is None:
            continue
        here = [f for f in usable if f.region.code == code]
        if here:
            return max(here, key=lambda f: f.reporting_year)
    raise NoFactor(
        f"no {kind} factor in catalogue {catalogue.version} for {location.describe()}, "
        f"reporting year at or before {year}, valid on {on.isoformat()}"
    )


def newest_for_region(catalogue: Catalogue, used: EmissionFactor, year: int, on: datetime.date) -> EmissionFactor:
    """The factor of ``used``'s region and kind that the rule gives now for activity in ``year``: the most
    recent reporting year at or before ``year`` valid on ``on`` (``used`` itself if nothing newer)."""
    same = [
        f
        for f in catalogue.factors.values()
        if f.kind == used.kind and f.region.code == used.region.code and f.valid_from <= on and f.reporting_year <= year
    ]
    return max(same, key=lambda f: f.reporting_year, default=used)


def possible_answers(
    catalogue: Catalogue, location: SiteLocation, year: int, since: datetime.date, until: datetime.date,
    kind: str = KIND_LOCATION,
) -> frozenset[str]:
    """The ids of every factor the rule can have given, with any version of ``catalogue`` its issuer can have
    held, on a decision date in [since, until]: what a verifier admits for an aggregate leaf, whose decision
    date (its receipt, between its window's start and the statement's issue) and catalogue version (the
    issuer's on that day, at most ``catalogue``'s) it does not see.

    A version dated after the decision date cannot have been held then; the first version stands for every
    day before it (aggregates received before the catalogue had a history). The rule's answer changes only
    on a version's date or a factor's ``valid_from``, so those days, and ``since``, are every case."""
    days = {since} | {
        d
        for d in [v.date for v in catalogue.history] + [f.valid_from for f in catalogue.factors.values()]
        if since < d <= until
    }
    answers = set()
    for index, held in enumerate(catalogue.history):
        content = as_of(catalogue, held.version)
        for day in days:
            if index > 0 and held.date > day:
                continue
            try:
                answers.add(select_factor(content, location, year, day, kind).id)
            except NoFactor:
                continue
    return frozenset(answers)
