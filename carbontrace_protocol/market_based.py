"""Market-based Scope 2: the rule, one definition for the cloud that states the figure and every verifier that
re-derives it (docs/accounting.md, "Market-based Scope 2", with the sources).

For a statement period [start, end), per site whose energy the statement's bundle holds:

1. Energy. The site's energy is the attribution of its aggregate leaves (carbontrace_protocol/attribution.py,
   the leaves of the batches whose signed header names the site): ``total`` (measured + substituted) and
   ``measured`` (measured and interpolated; substituted energy is an estimate, which no instrument covers).
2. Instruments. Each contractual instrument registered for the site (carbontrace_protocol/instruments.py)
   whose delivery period overlaps the statement period claims its period share (instruments.period_share:
   its volume spread evenly over its delivery period; the shares of any cut of time into periods add up to
   the volume, so an instrument is counted once). Instruments are applied in the order (delivery start,
   issuer, instrument id); each covers min(its share, the measured energy not yet covered); a share beyond
   the measured energy is not used and not carried to another period. Covered energy is at the instrument's
   emission rate.
3. Residual. The remaining energy (total − covered) is at the residual mix the selection rule gives
   (factor_rule.select_factor, kind ``residual_mix``) for the site's location, its activity year (the UTC
   year of the first time its leaves cover in the period) and the statement's issue date, with the rule's
   region fallback (province, grid, country). Where the catalogue has no residual mix for the site, the
   location-based grid factor of the same rule is used and the section says so (``fallback``:
   "no_residual_mix").
4. Integers. Emissions are Wh × 1e-4 kg/kWh = 1e-4 g, exact; the only rounding is the floor of the period
   share (rule 2), which telescopes.

The statement's ``market_based`` section (``section``) lists each site with its location and the instruments
it used (canonical record and its sha256); the verifier (``check_section``) takes those as the inputs and
recomputes everything else from the bundle and the factor catalogue.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from carbontrace_protocol import attribution, strict_json
from carbontrace_protocol.batch import parse_header
from carbontrace_protocol.emission_factors import (
    KIND_LOCATION,
    KIND_RESIDUAL,
    Catalogue,
    EmissionFactor,
    as_of,
    load_catalogue,
)
from carbontrace_protocol.errors import ProtocolError, shown
from carbontrace_protocol.factor_rule import (
    NoFactor,
    SiteLocation,
    activity_year,
    check_location,
    possible_answers,
    select_factor,
)
from carbontrace_protocol.instruments import Instrument, InstrumentError, parse_instrument, period_share
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.views import KIND_AGGREGATE, leaf_content, leaf_time

MARKET_RULE = "market-based/v1"
METHOD_MARKET = "market-based"
SECTION_KEY = "market_based"
STEP = "statement_market_based"
FALLBACK_NO_RESIDUAL = "no_residual_mix"
SECTION_FIELDS = ("rule", "catalogue_version", "energy_wh", "emissions", "sites")
SITE_FIELDS = ("site_id", "location", "activity_year", "energy_wh", "instruments", "residual_factor", "emissions")
LOCATION_FIELDS = ("country", "province", "grid_region")
USED_FIELDS = ("record", "record_sha256", "period_share_wh", "used_wh", "emissions")


class MarketBasedError(ProtocolError):
    reason = "bad_market_based"


@dataclass(frozen=True)
class SiteEnergy:
    total_wh: int
    measured_wh: int
    factor_ids: frozenset[str]  # the location-based factors its leaves use
    first_time: int  # the earliest time its leaves cover in the period: its activity year's instant
    factor_uses: frozenset[tuple[str, int]] = frozenset()  # (factor id, window start) of its leaves


def emissions_figure(grams_e4: int) -> dict[str, Any]:
    return {**attribution.emissions_figure(grams_e4), "method": METHOD_MARKET}


def site_energy(bundle: ProofBundle, start: int, end: int, until: int) -> dict[str, SiteEnergy]:
    """Per site (the site its batch's signed header names), the attributed energy of [start, end) (rule 1)."""
    site_of_batch: dict[str, str] = {}
    for batch in bundle.batches:
        _, header = parse_header(batch.signed_header)
        site_of_batch[batch.batch_id] = str(header["site"])
    by_site: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    first_of: dict[str, int] = {}  # the earliest time a site's leaves cover
    for item in bundle.items:
        if item.kind != KIND_AGGREGATE:
            continue
        if item.batch_id not in site_of_batch:
            raise MarketBasedError(f"aggregate of batch {item.batch_id}: the bundle holds no such batch")
        kind, content = leaf_content(item.leaf, dict(item.openings))
        site_id = site_of_batch[item.batch_id]
        by_site.setdefault(site_id, []).append((item.device_id, content))
        covered_from = leaf_time(kind, content)[0]
        first_of[site_id] = min(first_of.get(site_id, covered_from), covered_from)
    out = {}
    for site_id, opened in sorted(by_site.items()):
        folded = attribution.attribute(opened, start, end, min(until, end))
        uses = set()
        for _, content in opened:
            factor = content.get("factor")
            if isinstance(factor, dict):
                uses.add((str(factor["id"]), int(content["window"][0])))
        out[site_id] = SiteEnergy(folded.measured_wh + folded.substituted_wh, folded.measured_wh,
                                  frozenset(f for f, _ in uses), max(start, first_of[site_id]), frozenset(uses))
    return out


def residual_factor(
    catalogue: Catalogue, location: SiteLocation, year: int, on: datetime.date
) -> tuple[EmissionFactor, str | None]:
    """(factor, fallback) for the energy no instrument covers (rule 3)."""
    try:
        return select_factor(catalogue, location, year, on, kind=KIND_RESIDUAL), None
    except NoFactor:
        pass
    try:
        return select_factor(catalogue, location, year, on, kind=KIND_LOCATION), FALLBACK_NO_RESIDUAL
    except NoFactor as err:
        raise MarketBasedError(f"no residual mix and no location-based factor: {err}") from err


def factor_json(factor: EmissionFactor, fallback: str | None) -> dict[str, Any]:
    return {
        "id": factor.id,
        "kind": factor.kind,
        "kg_per_kwh_e4": factor.kg_per_kwh_e4,
        "region": factor.region.code,
        "reporting_year": factor.reporting_year,
        "valid_from": factor.valid_from.isoformat(),
        "source": factor.source.to_json(),
        "fallback": fallback,
    }


def _location_json(location: SiteLocation) -> dict[str, Any]:
    return {"country": location.country, "province": location.province, "grid_region": location.grid_region}


def instrument_order(instrument: Instrument) -> tuple[int, str, str]:
    return (instrument.delivery_start, instrument.issuer, instrument.instrument_id)


def site_entry(
    site_id: str,
    energy: SiteEnergy,
    location: SiteLocation,
    instruments: Iterable[Instrument],
    start: int,
    end: int,
    catalogue: Catalogue,
    on: datetime.date,
) -> dict[str, Any]:
    """One site's market-based figures for [start, end) decided on ``on`` (rules 2-4); ``instruments`` are
    the site's, each overlapping the period."""
    year = activity_year(energy.first_time)
    factor, fallback = residual_factor(catalogue, location, year, on)
    remaining, grams, used_list = energy.measured_wh, 0, []
    listed = sorted(instruments, key=instrument_order)
    for instrument in listed:
        if instrument.site_id != site_id:
            raise MarketBasedError(f"instrument {instrument.instrument_id} is registered for site "
                                   f"{instrument.site_id}, not {site_id}")
        share = period_share(instrument, start, end)
        used = min(share, remaining)
        remaining -= used
        grams += used * instrument.rate_e4
        used_list.append({
            "record": instrument.to_json(),
            "record_sha256": instrument.sha256(),
            "period_share_wh": share,
            "used_wh": used,
            "emissions": emissions_figure(used * instrument.rate_e4),
        })
    covered = energy.measured_wh - remaining
    residual_wh = energy.total_wh - covered
    grams += residual_wh * factor.kg_per_kwh_e4
    return {
        "site_id": site_id,
        "location": _location_json(location),
        "activity_year": year,
        "energy_wh": {"total": energy.total_wh, "measured": energy.measured_wh, "instruments": covered,
                      "residual": residual_wh},
        "instruments": used_list,
        "residual_factor": factor_json(factor, fallback),
        "emissions": emissions_figure(grams),
    }


def counted_once(instruments: Iterable[Instrument]) -> list[Instrument]:
    """The instruments, MarketBasedError if one is there twice: the same issuer and id with overlapping
    delivery is the same energy claimed twice (double counting; GHG Protocol Scope 2 quality criteria)."""
    seen: list[Instrument] = []
    for instrument in instruments:
        if any(instrument.key == other.key and instrument.overlaps(other) for other in seen):
            raise MarketBasedError(
                f"instrument {instrument.issuer}/{instrument.instrument_id} listed twice for overlapping "
                "delivery (double counting)"
            )
        seen.append(instrument)
    return seen


def section(
    bundle: ProofBundle,
    start: int,
    end: int,
    issued_at: int,
    locations: Mapping[str, SiteLocation],
    instruments: Iterable[Instrument],
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """The ``market_based`` section of the statement of [start, end) issued at ``issued_at``: every site the
    bundle holds energy of (its location from ``locations``), with the instruments of ``instruments`` that are
    registered for it and whose delivery overlaps the period. MarketBasedError if a site has no location or
    an instrument is listed twice (the same issuer and id with overlapping delivery: double counting)."""
    catalogue = catalogue or load_catalogue()
    on = datetime.datetime.fromtimestamp(issued_at, datetime.UTC).date()
    energy = site_energy(bundle, start, end, issued_at)
    by_site: dict[str, list[Instrument]] = {}
    for instrument in counted_once(instruments):
        if instrument.delivery_start < end and start < instrument.delivery_end:
            by_site.setdefault(instrument.site_id, []).append(instrument)
    sites, total_wh, covered_wh, total_g = [], 0, 0, 0
    for site_id, used_energy in energy.items():
        if site_id not in locations:
            raise MarketBasedError(f"site {site_id}: no location given for its residual mix")
        entry = site_entry(site_id, used_energy, locations[site_id], by_site.pop(site_id, []), start, end,
                           catalogue, on)
        sites.append(entry)
        total_wh += used_energy.total_wh
        covered_wh += entry["energy_wh"]["instruments"]
        total_g += entry["emissions"]["g_e4"]
    return {
        "rule": MARKET_RULE,
        "catalogue_version": catalogue.version,
        "energy_wh": {"total": total_wh, "instruments": covered_wh, "residual": total_wh - covered_wh},
        "emissions": emissions_figure(total_g),
        "sites": sites,
    }


def _exact(value: Any, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(names):
        raise MarketBasedError(f"{what} must be an object with exactly the fields {sorted(names)}")
    return value


def section_inputs(value: Any) -> tuple[dict[str, SiteLocation], list[Instrument]]:
    """(locations by site, instruments) a section states: the inputs a verifier takes from it. Each record's
    sha256 must be its canonical JSON's; each location's codes catalogue regions of the right level."""
    catalogue = load_catalogue()
    body = _exact(value, "market_based", SECTION_FIELDS)
    if not isinstance(body["sites"], list):
        raise MarketBasedError("market_based.sites must be a list")
    locations: dict[str, SiteLocation] = {}
    instruments: list[Instrument] = []
    for site in body["sites"]:
        entry = _exact(site, "market_based.sites[]", SITE_FIELDS)
        site_id = entry["site_id"]
        if not isinstance(site_id, str) or site_id in locations:
            raise MarketBasedError("market_based.sites[].site_id must be a string, each site once")
        where = _exact(entry["location"], f"site {site_id}: location", LOCATION_FIELDS)
        if not isinstance(where["country"], str) or any(
            where[k] is not None and not isinstance(where[k], str) for k in ("province", "grid_region")
        ):
            raise MarketBasedError(f"site {site_id}: location codes must be strings (province, grid_region or null)")
        location = SiteLocation(where["country"], where["province"], where["grid_region"])
        try:
            check_location(catalogue, location)
        except ProtocolError as err:
            raise MarketBasedError(f"site {site_id}: {err}") from err
        locations[site_id] = location
        if not isinstance(entry["instruments"], list):
            raise MarketBasedError(f"site {site_id}: instruments must be a list")
        for used in entry["instruments"]:
            used = _exact(used, f"site {site_id}: instruments[]", USED_FIELDS)
            try:
                instrument = parse_instrument(used["record"])
            except InstrumentError as err:
                raise MarketBasedError(f"site {site_id}: {err}") from err
            if instrument.site_id != site_id:
                raise MarketBasedError(f"site {site_id}: instrument {instrument.instrument_id} is registered for "
                                       f"site {instrument.site_id}")
            digest = hashlib.sha256(strict_json.canonical(used["record"])).hexdigest()
            if used["record_sha256"] != digest or digest != instrument.sha256():
                raise MarketBasedError(f"site {site_id}: instrument {instrument.instrument_id}'s record_sha256 is "
                                       "not the sha256 of its canonical record")
            instruments.append(instrument)
    return locations, instruments


def check_location_fits(
    locations: Mapping[str, SiteLocation], energy: Mapping[str, SiteEnergy], catalogue: Catalogue, issued_at: int
) -> None:
    """Each site's leaves use the location-based factor the rule gives its stated location: for every leaf, one
    of factor_rule.possible_answers for the location, the leaf's activity year and a decision date from its
    window's start to the statement's issue, with a version of ``catalogue`` (the catalogue as of the version
    the statement names) its issuer can have held then. The cloud applies the rule exactly on each
    aggregate's receipt; a verifier sees neither the receipt date nor the version held that day, so it admits
    every answer the rule can have given in that span and no other (not an older year than the span allows,
    not a factor the named version did not hold, not another region)."""
    until = datetime.datetime.fromtimestamp(issued_at, datetime.UTC).date()
    answers: dict[tuple[str, int, datetime.date], frozenset[str]] = {}
    for site_id, used in energy.items():
        location = locations.get(site_id)
        if location is None:
            raise MarketBasedError(f"site {site_id} holds energy in the bundle but is not in market_based.sites")
        for factor_id, window_start in sorted(used.factor_uses):
            year = activity_year(window_start)
            since = min(until, datetime.datetime.fromtimestamp(window_start, datetime.UTC).date())
            key = (site_id, year, since)
            if key not in answers:
                answers[key] = possible_answers(catalogue, location, year, since, until)
            if factor_id not in answers[key]:
                raise MarketBasedError(
                    f"site {site_id}: a leaf of window start {window_start} uses factor {factor_id}, not one the "
                    f"rule gives {location.describe()} for {year} between {since} and {until} with catalogue "
                    f"{catalogue.version} or a version before it: {sorted(answers[key])}"
                )


def stated_catalogue(value: Any, issued_at: int) -> Catalogue:
    """The catalogue as of the version the section names (emission_factors.as_of): the content the issuer had,
    reconstructed from the verifier's own catalogue of that version or newer (a version only adds entries,
    each naming the version that added it). MarketBasedError if the verifier's catalogue does not list the
    version, or if the version is dated after the statement's issue (no issuer can have used it).

    A version the verifier does not know is refused, not checked more loosely: were it accepted with a weaker
    check, an insider could name a made-up version to get that weaker check. The remedy is a newer catalogue
    (CARBONTRACE_FACTOR_CATALOGUE)."""
    catalogue = load_catalogue()
    version = value.get("catalogue_version") if isinstance(value, dict) else None
    if not isinstance(version, str) or not catalogue.knows(version):
        raise MarketBasedError(
            f"the statement names factor catalogue version {shown(version)}, which this verifier's catalogue "
            f"({catalogue.version}) does not list: verify with a catalogue of that version or newer"
        )
    stated = as_of(catalogue, version)
    on = datetime.datetime.fromtimestamp(issued_at, datetime.UTC).date()
    if stated.date > on:
        raise MarketBasedError(f"factor catalogue version {version} is dated {stated.date}, after the statement's "
                               f"issue date {on}")
    return stated


def check_section(value: Any, bundle: ProofBundle, start: int, end: int, issued_at: int) -> dict[str, Any]:
    """The verifier's side: the section recomputed from its own inputs (locations, instrument records) and the
    bundle; MarketBasedError naming what differs. Returns the recomputed section.

    The residual factor is the rule's own answer (select_factor) against the catalogue as of the version the
    section names (``stated_catalogue``), whichever newer version the verifier holds: exact, not bounds. A
    factor added since is for a restatement to apply (docs/accounting.md)."""
    locations, instruments = section_inputs(value)
    catalogue = stated_catalogue(value, issued_at)
    try:
        energy = site_energy(bundle, start, end, issued_at)
    except (ProtocolError, ValueError, KeyError, TypeError) as err:
        raise MarketBasedError(f"the site energy does not read from the bundle: {err}") from err
    check_location_fits(locations, energy, catalogue, issued_at)
    if set(locations) != set(energy):
        raise MarketBasedError(f"market_based.sites {sorted(locations)} are not the sites the bundle holds energy "
                               f"of {sorted(energy)}")
    recomputed = section(bundle, start, end, issued_at, locations, instruments, catalogue)
    listed = sum(len(site["instruments"]) for site in recomputed["sites"])
    if listed != len(instruments):
        raise MarketBasedError("an instrument listed does not overlap the period")
    if strict_json.canonical(value) != strict_json.canonical(recomputed):
        raise MarketBasedError(f"market_based differs from the rule's figures: recomputed {recomputed}")
    return recomputed
