"""The emission factor catalogue: versioned data (carbontrace_protocol/data/emission_factors.json), parsed
strictly into typed values, never constants in code.

Each factor names its region (a code and a name), the reporting year it describes, its kind (location-based
grid average, residual mix, fossil-only), unit and gas, the date from which the catalogue lets it be used
(``valid_from``) and the official publication that states it (publisher, title, document number, date,
address — null where the catalogue could not confirm one; docs/accounting.md, "Emission factors").

Values are exact decimals with four places, held as integers of 1e-4 kgCO2/kWh, so that
emissions = energy × factor is exact: Wh × (1e-4 kg/kWh) = 1e-4 g.

Which factor a site uses is not chosen here: carbontrace_protocol/factor_rule.py owns that rule.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from carbontrace_protocol import strict_json
from carbontrace_protocol.errors import ProtocolError, shown

FACTOR_EXPONENT = -4
CATALOGUE_FORMAT = "carbontrace-factor-catalogue"
CATALOGUE_VERSION = 1
UNIT = "kgCO2/kWh"
GAS = "CO2"

KIND_LOCATION = "location_grid_average"  # GHG Protocol Scope 2 location-based: average of a grid's generation
KIND_RESIDUAL = "residual_mix"  # the grid average without market-traded (contractually claimed) power
KIND_FOSSIL = "fossil_generation_average"  # fossil-fuel generation only
KINDS = frozenset({KIND_LOCATION, KIND_RESIDUAL, KIND_FOSSIL})

LEVEL_COUNTRY, LEVEL_GRID, LEVEL_PROVINCE = "country", "grid_region", "province"
LEVELS = frozenset({LEVEL_COUNTRY, LEVEL_GRID, LEVEL_PROVINCE})

_DOCUMENT_FIELDS = ("format", "version", "catalogue_version", "catalogue_date", "history", "default", "regions",
                    "publications", "factors")
_HISTORY_FIELDS = ("version", "date")
_REGION_FIELDS = ("code", "name", "level", "country")
_PUBLICATION_FIELDS = ("id", "publisher", "title", "document_number", "publication_date", "url", "confirmed_by",
                       "added_in")
_FACTOR_FIELDS = ("id", "kind", "region", "reporting_year", "kg_per_kwh", "unit", "gas", "publication",
                  "valid_from", "added_in")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DECIMAL_4 = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{4}")


class CatalogueError(ProtocolError):
    reason = "bad_factor_catalogue"


@dataclass(frozen=True)
class Region:
    code: str  # ISO 3166-1 alpha-2 for a country, ISO 3166-2 for a province, CN-GRID-* for a regional grid
    name: str
    level: str
    country: str


@dataclass(frozen=True)
class Publication:
    id: str
    publisher: str
    title: str
    document_number: str | None
    publication_date: datetime.date | None
    url: str | None
    confirmed_by: tuple[str, ...]  # where the catalogue read the figures (not part of statements)
    added_in: str  # the catalogue version that added it (not part of statements)

    def to_json(self) -> dict[str, Any]:
        """The official source as a statement names it."""
        return {
            "publisher": self.publisher,
            "title": self.title,
            "document_number": self.document_number,
            "publication_date": None if self.publication_date is None else self.publication_date.isoformat(),
            "url": self.url,
        }


@dataclass(frozen=True)
class EmissionFactor:
    id: str
    kind: str
    region: Region
    reporting_year: int
    kg_per_kwh_e4: int  # kgCO2 per kWh in units of 1e-4
    unit: str
    gas: str
    valid_from: datetime.date
    source: Publication
    added_in: str  # the catalogue version that added it (not part of statements)

    @property
    def kg_per_kwh(self) -> Decimal:
        return Decimal(self.kg_per_kwh_e4).scaleb(FACTOR_EXPONENT)

    @property
    def year(self) -> int:
        return self.reporting_year


@dataclass(frozen=True)
class CatalogueVersion:
    version: str
    date: datetime.date


@dataclass(frozen=True)
class Catalogue:
    version: str
    date: datetime.date
    default: str
    regions: Mapping[str, Region]
    publications: Mapping[str, Publication]
    factors: Mapping[str, EmissionFactor]
    history: tuple[CatalogueVersion, ...]  # every version up to this one, oldest first; the last is this

    def knows(self, version: str) -> bool:
        """Whether ``version`` is this catalogue's or one before it (its history lists it)."""
        return any(v.version == version for v in self.history)


def _fields(value: Any, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    return strict_json.exact_object(value, what, names, CatalogueError)


def _text(value: Any, what: str, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise CatalogueError(f"{what} must be a non-empty string without surrounding spaces")
    return value


def _required(value: Any, what: str) -> str:
    text = _text(value, what)
    assert text is not None
    return text


def _date(value: Any, what: str, nullable: bool = False) -> datetime.date | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise CatalogueError(f"{what} must be a date YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as err:
        raise CatalogueError(f"{what}: {err}") from err


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise CatalogueError(f"{what} must be an id of letters, digits, '.', '_' or '-'")
    return value


def _value_e4(value: Any, what: str) -> int:
    # A string, never a JSON number: a float would already have lost the exact decimal the publication prints.
    if not isinstance(value, str) or not _DECIMAL_4.fullmatch(value):
        raise CatalogueError(f"{what} must be a string decimal with exactly 4 places, e.g. \"0.5306\"")
    try:
        return int(Decimal(value).scaleb(-FACTOR_EXPONENT))
    except InvalidOperation as err:  # pragma: no cover - the pattern already admits only decimals
        raise CatalogueError(f"{what}: {err}") from err


def _one_of(value: Any, names: Collection[str]) -> bool:
    """Whether ``value`` is one of ``names``: a string first, since a JSON list or object is unhashable and
    would raise TypeError on the membership test instead of being refused."""
    return isinstance(value, str) and value in names


def _region(raw: Any, index: int) -> Region:
    entry = _fields(raw, f"regions[{index}]", _REGION_FIELDS)
    level = entry["level"]
    if not _one_of(level, LEVELS):
        raise CatalogueError(f"regions[{index}].level must be one of {sorted(LEVELS)}")
    country = _required(entry["country"], f"regions[{index}].country")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise CatalogueError(f"regions[{index}].country must be an ISO 3166-1 alpha-2 code")
    code = _id(entry["code"], f"regions[{index}].code")
    if (level == LEVEL_COUNTRY) != (code == country) or not code.startswith(country):
        raise CatalogueError(f"regions[{index}]: code {code!r} does not fit level {level!r} in {country}")
    return Region(code, _required(entry["name"], f"regions[{index}].name"), level, country)


def _history(raw: Any) -> tuple[CatalogueVersion, ...]:
    """The versions the catalogue went through, oldest first: each named once, dates never going back."""
    if not isinstance(raw, list) or not raw:
        raise CatalogueError("catalogue.history must list the catalogue's versions, oldest first (at least one)")
    out: list[CatalogueVersion] = []
    for index, entry in enumerate(raw):
        entry = _fields(entry, f"history[{index}]", _HISTORY_FIELDS)
        version = _id(entry["version"], f"history[{index}].version")
        date = _date(entry["date"], f"history[{index}].date")
        assert date is not None
        if any(v.version == version for v in out):
            raise CatalogueError(f"history: version {version!r} appears twice")
        if out and date < out[-1].date:
            raise CatalogueError(f"history is not ordered: version {version} ({date}) is listed after "
                                 f"{out[-1].version} ({out[-1].date})")
        out.append(CatalogueVersion(version, date))
    return tuple(out)


def _added_in(value: Any, what: str, order: Mapping[str, int], own: str) -> str:
    """The version an entry was added in: one of the history's, not later than the catalogue's own."""
    if not isinstance(value, str) or value not in order:
        raise CatalogueError(f"{what}: added_in {shown(value)} is not a version of the catalogue's history")
    if order[value] > order[own]:
        raise CatalogueError(f"{what}: added_in {value} is a version later than the catalogue's own ({own})")
    return value


def _publication(raw: Any, index: int, order: Mapping[str, int], own: str) -> Publication:
    what = f"publications[{index}]"
    entry = _fields(raw, what, _PUBLICATION_FIELDS)
    confirmed = entry["confirmed_by"]
    if not isinstance(confirmed, list) or not confirmed:
        raise CatalogueError(f"{what}.confirmed_by must list where the figures were read (at least one source)")
    url = _text(entry["url"], f"{what}.url", nullable=True)
    if url is not None and not url.startswith("https://"):
        raise CatalogueError(f"{what}.url must be an https address or null")
    return Publication(
        id=_id(entry["id"], f"{what}.id"),
        publisher=_required(entry["publisher"], f"{what}.publisher"),
        title=_required(entry["title"], f"{what}.title"),
        document_number=_text(entry["document_number"], f"{what}.document_number", nullable=True),
        publication_date=_date(entry["publication_date"], f"{what}.publication_date", nullable=True),
        url=url,
        confirmed_by=tuple(_required(c, f"{what}.confirmed_by[]") for c in confirmed),
        added_in=_added_in(entry["added_in"], what, order, own),
    )


def _factor(
    raw: Any, index: int, regions: Mapping[str, Region], pubs: Mapping[str, Publication],
    order: Mapping[str, int], own: str,
) -> EmissionFactor:
    what = f"factors[{index}]"
    entry = _fields(raw, what, _FACTOR_FIELDS)
    factor_id = _id(entry["id"], f"{what}.id")
    what = f"factor {factor_id}"
    if not _one_of(entry["kind"], KINDS):
        raise CatalogueError(f"{what}: kind must be one of {sorted(KINDS)}")
    if not _one_of(entry["region"], regions):
        raise CatalogueError(f"{what}: region {shown(entry['region'])} is not in the catalogue's regions")
    if not _one_of(entry["publication"], pubs):
        raise CatalogueError(
            f"{what}: publication {shown(entry['publication'])} is not in the catalogue's publications")
    year = entry["reporting_year"]
    if type(year) is not int or not 1990 <= year <= 2100:
        raise CatalogueError(f"{what}: reporting_year must be a JSON integer year")
    if entry["unit"] != UNIT or entry["gas"] != GAS:
        raise CatalogueError(f"{what}: unit must be {UNIT!r} and gas {GAS!r}")
    valid_from = _date(entry["valid_from"], f"{what}.valid_from")
    assert valid_from is not None
    source = pubs[entry["publication"]]
    if source.publication_date is not None and valid_from < source.publication_date:
        raise CatalogueError(f"{what}: valid_from {valid_from} is before its publication ({source.publication_date})")
    if valid_from.year <= year:
        raise CatalogueError(f"{what}: valid_from {valid_from} is not after the reporting year {year} it describes")
    added_in = _added_in(entry["added_in"], what, order, own)
    if order[source.added_in] > order[added_in]:
        raise CatalogueError(f"{what}: added in {added_in}, before its publication {source.id} ({source.added_in})")
    return EmissionFactor(
        id=factor_id,
        kind=entry["kind"],
        region=regions[entry["region"]],
        reporting_year=year,
        kg_per_kwh_e4=_value_e4(entry["kg_per_kwh"], f"{what}.kg_per_kwh"),
        unit=UNIT,
        gas=GAS,
        valid_from=valid_from,
        source=source,
        added_in=added_in,
    )


def _unique(items: list[Any], what: str, key: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if key(item) in out:
            raise CatalogueError(f"{what} {key(item)!r} appears twice")
        out[key(item)] = item
    return out


def parse_catalogue(text: str | bytes) -> Catalogue:
    """The catalogue from its JSON text; CatalogueError on any unknown, missing or ill-typed field."""
    try:
        raw = strict_json.loads(text)
    except ProtocolError as err:
        raise CatalogueError(f"the catalogue is not strict JSON: {err}") from err
    doc = _fields(raw, "catalogue", _DOCUMENT_FIELDS)
    if doc["format"] != CATALOGUE_FORMAT or type(doc["version"]) is not int or doc["version"] != CATALOGUE_VERSION:
        raise CatalogueError(f"not a {CATALOGUE_FORMAT} v{CATALOGUE_VERSION}")
    for name in ("regions", "publications", "factors"):
        if not isinstance(doc[name], list):
            raise CatalogueError(f"catalogue.{name} must be a list")
    own = _required(doc["catalogue_version"], "catalogue.catalogue_version")
    history = _history(doc["history"])
    order = {v.version: i for i, v in enumerate(history)}
    if own not in order:
        raise CatalogueError(f"catalogue.history does not list the catalogue's own version {own}")
    regions = _unique([_region(r, i) for i, r in enumerate(doc["regions"])], "region", lambda r: r.code)
    pubs = _unique([_publication(p, i, order, own) for i, p in enumerate(doc["publications"])], "publication",
                   lambda p: p.id)
    factors = _unique(
        [_factor(f, i, regions, pubs, order, own) for i, f in enumerate(doc["factors"])], "factor", lambda f: f.id
    )
    same = _unique(
        [f for f in factors.values()], "factor for region, kind and year",
        lambda f: f"{f.region.code}/{f.kind}/{f.reporting_year}",
    )
    del same  # one factor per (region, kind, reporting year): the selection rule must never have to choose
    date = _date(doc["catalogue_date"], "catalogue.catalogue_date")
    assert date is not None
    if history[-1] != CatalogueVersion(own, date):
        raise CatalogueError(f"catalogue.history must end with the catalogue's own version {own} of {date}")
    default = _id(doc["default"], "catalogue.default")
    if default not in factors:
        raise CatalogueError(f"default emission factor {default!r} is not in the catalogue")
    return Catalogue(own, date, default, regions, pubs, factors, history)


def as_of(catalogue: Catalogue, version: str) -> Catalogue:
    """The catalogue as it was at ``version``: the publications and factors added in it or before (a version
    only adds, so this is that version's content). CatalogueError if the history does not list ``version``.

    Regions are kept whole (a region is a place, not a figure: a location's codes select nothing by
    themselves), and so is the default (a gateway's fallback, not a verifier's concern)."""
    order = {v.version: i for i, v in enumerate(catalogue.history)}
    if version not in order:
        raise CatalogueError(f"catalogue {catalogue.version} does not know version {shown(version)} (its history: "
                             f"{', '.join(order)})")
    upto = order[version]
    return Catalogue(
        version=version,
        date=catalogue.history[upto].date,
        default=catalogue.default,
        regions=catalogue.regions,
        publications={k: p for k, p in catalogue.publications.items() if order[p.added_in] <= upto},
        factors={k: f for k, f in catalogue.factors.items() if order[f.added_in] <= upto},
        history=catalogue.history[: upto + 1],
    )


CATALOGUE_ENV = "CARBONTRACE_FACTOR_CATALOGUE"


def load_catalogue(path: str | None = None) -> Catalogue:
    """The catalogue at ``path``, else at $CARBONTRACE_FACTOR_CATALOGUE (a deployment that received a newer
    catalogue than the package's, e.g. with a factor just published), else the bundled one."""
    return _load_catalogue(path or os.environ.get(CATALOGUE_ENV) or None)


@lru_cache(maxsize=8)
def _load_catalogue(path: str | None) -> Catalogue:
    if path is None:
        text = resources.files("carbontrace_protocol").joinpath("data/emission_factors.json").read_bytes()
    else:
        try:
            text = Path(path).read_bytes()  # bytes: parse_catalogue refuses text that is not UTF-8
        except OSError as err:  # missing, a directory, unreadable: the named catalogue is not to be had
            raise CatalogueError(f"the factor catalogue {path} cannot be read: {err.strerror or err}") from err
    return parse_catalogue(text)


def load_table(path: str | None = None) -> tuple[Mapping[str, EmissionFactor], str]:
    """The factors (id → factor) and the default id; ``path`` overrides the bundled catalogue."""
    catalogue = load_catalogue(path)
    return catalogue.factors, catalogue.default


def get_factor(factor_id: str | None = None, path: str | None = None) -> EmissionFactor:
    """The catalogue's factor ``factor_id`` (its default when None); KeyError if it has none by that id."""
    table, default = load_table(path)
    key = factor_id or default
    if key not in table:
        raise KeyError(f"unknown emission factor {key!r}; known: {', '.join(sorted(table))}")
    return table[key]
