"""Write docs/conformance/factor-catalogue/: a small valid catalogue and mutated ones, each with its verdict.

Run as ``python -m tests.protocol.make_factor_catalogue_cases [DIR]``; tests/protocol/test_factor_catalogue.py
parses every file it writes. The base is two regions, one publication and two factors taken from the
bundled catalogue; each case changes one thing a strict parser must refuse.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

Mutation = Callable[[dict[str, Any]], None]


def base() -> dict[str, Any]:
    bundled = json.loads(resources.files("carbontrace_protocol").joinpath("data/emission_factors.json").read_text())
    factors = [f for f in bundled["factors"] if f["id"] in ("CN-national-2022", "CN-north-2022")]
    return {
        **{k: bundled[k] for k in ("format", "version", "catalogue_version", "catalogue_date", "history")},
        "default": "CN-national-2022",
        "regions": [r for r in bundled["regions"] if r["code"] in ("CN", "CN-GRID-NORTH")],
        "publications": [p for p in bundled["publications"] if p["id"] == factors[0]["publication"]],
        "factors": factors,
    }


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def _drop(path: tuple[Any, ...]) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return apply


def _duplicate_factor(doc: dict[str, Any]) -> None:
    doc["factors"].append(copy.deepcopy(doc["factors"][0]))


def _second_factor_same_region_year(doc: dict[str, Any]) -> None:
    twin = copy.deepcopy(doc["factors"][0])
    twin["id"] = "CN-national-2022-twin"
    doc["factors"].append(twin)


EARLIER = {"version": "2026-11-30.1", "date": "2026-11-30"}  # a version before the bundled one
LATER = {"version": "2099-01-01.1", "date": "2099-01-01"}


def _two_versions(doc: dict[str, Any]) -> None:
    """The base as its second version: the publication and the national factor added in an earlier one."""
    doc["history"].insert(0, dict(EARLIER))
    doc["publications"][0]["added_in"] = doc["factors"][0]["added_in"] = EARLIER["version"]


def _history_not_ordered(doc: dict[str, Any]) -> None:
    doc["history"].insert(0, {"version": "2026-12-31.1", "date": "2026-12-31"})


def _added_in_later_version(doc: dict[str, Any]) -> None:
    doc["history"].append(dict(LATER))
    doc["factors"][1]["added_in"] = LATER["version"]


def _history_past_own_version(doc: dict[str, Any]) -> None:
    doc["history"].append(dict(LATER))


def _version_twice(doc: dict[str, Any]) -> None:
    doc["history"].insert(0, dict(doc["history"][0]))


def _factor_before_its_publication(doc: dict[str, Any]) -> None:
    doc["history"].insert(0, dict(EARLIER))
    doc["factors"][0]["added_in"] = EARLIER["version"]


CASES: dict[str, tuple[str, Mutation | None, str | None]] = {
    "valid": ("two factors of the bundled catalogue, as they are", None, None),
    "unknown-factor-field": ("a factor with a field the format does not have", _set(("factors", 0, "note"), "x"),
                             "unknown fields ['note']"),
    "missing-valid-from": ("a factor without valid_from", _drop(("factors", 0, "valid_from")),
                           "missing fields ['valid_from']"),
    "missing-document-number": ("a publication without the document_number field (null is how 'unknown' is said)",
                                _drop(("publications", 0, "document_number")), "missing fields ['document_number']"),
    "value-as-number": ("the value as a JSON number, not an exact decimal string",
                        _set(("factors", 0, "kg_per_kwh"), 0.5366), "exactly 4 places"),
    "value-five-places": ("a value with five decimal places", _set(("factors", 0, "kg_per_kwh"), "0.53660"),
                          "exactly 4 places"),
    "year-as-string": ("reporting_year as a string", _set(("factors", 0, "reporting_year"), "2022"),
                       "reporting_year must be a JSON integer"),
    "unknown-kind": ("a kind the catalogue does not define", _set(("factors", 0, "kind"), "marginal"),
                     "kind must be one of"),
    "unknown-region": ("a factor for a region the catalogue does not list", _set(("factors", 0, "region"), "CN-HE"),
                       "is not in the catalogue's regions"),
    "unknown-publication": ("a factor citing a publication the catalogue does not list",
                            _set(("factors", 0, "publication"), "newspaper"), "is not in the catalogue's publications"),
    "wrong-unit": ("a factor in another unit", _set(("factors", 0, "unit"), "tCO2/MWh"), "unit must be"),
    "valid-before-publication": ("valid_from earlier than the publication's date",
                                 _set(("factors", 0, "valid_from"), "2024-12-19"), "is before its publication"),
    "bad-date": ("valid_from that is no date", _set(("factors", 0, "valid_from"), "2024-13-01"), "valid_from"),
    "no-confirmation": ("a publication that says nowhere where its figures were read",
                        _set(("publications", 0, "confirmed_by"), []), "confirmed_by must list"),
    "http-url": ("a publication address that is not https", _set(("publications", 0, "url"), "http://example.org"),
                 "https address or null"),
    "duplicate-factor": ("the same factor id twice", _duplicate_factor, "appears twice"),
    "two-factors-one-slot": ("two factors for one region, kind and year (the rule could not choose)",
                             _second_factor_same_region_year, "appears twice"),
    "default-not-listed": ("a default that is not a factor", _set(("default",), "CN-national-2099"),
                           "is not in the catalogue"),
    "province-code-for-grid": ("a grid region whose level says province",
                               _set(("regions", 1, "level"), "country"), "does not fit level"),
    "other-format": ("another document format", _set(("format",), "emission-factors"), "not a carbontrace"),
    "valid-two-versions": ("a catalogue of two versions, the publication and one factor added in the first",
                           _two_versions, None),
    "missing-added-in": ("a factor that does not say which catalogue version added it",
                         _drop(("factors", 0, "added_in")), "missing fields ['added_in']"),
    "publication-missing-added-in": ("a publication that does not say which catalogue version added it",
                                     _drop(("publications", 0, "added_in")), "missing fields ['added_in']"),
    "added-in-unknown-version": ("a factor added in a version the history does not list",
                                 _set(("factors", 0, "added_in"), "2026-12-02.1"),
                                 "is not a version of the catalogue's history"),
    "added-in-later-version": ("a factor added in a version later than the catalogue's own",
                               _added_in_later_version, "later than the catalogue's own"),
    "factor-before-its-publication": ("a factor added in a version before the publication it cites",
                                      _factor_before_its_publication, "before its publication"),
    "history-not-ordered": ("a history whose versions go back in date", _history_not_ordered,
                            "history is not ordered"),
    "history-version-twice": ("a history naming one version twice", _version_twice, "appears twice"),
    "history-empty": ("no version history", _set(("history",), []), "must list the catalogue's versions"),
    "history-without-own-version": ("a history that does not list the catalogue's own version",
                                    _set(("history", 0, "version"), "2026-12-02.1"),
                                    "does not list the catalogue's own version"),
    "history-past-own-version": ("a history going on past the catalogue's own version",
                                 _history_past_own_version, "must end with the catalogue's own version"),
    "history-other-date": ("the own version's history date is not the catalogue_date",
                           _set(("history", 0, "date"), "2026-12-02"), "must end with the catalogue's own version"),
    "missing-history": ("a catalogue without its version history", _drop(("history",)), "missing fields ['history']"),
    # a JSON list or object where a name is looked up: unhashable, a TypeError of the lookup before it was refused
    "kind-as-list": ("a factor's kind written as a list", _set(("factors", 0, "kind"), ["location"]),
                     "kind must be one of"),
    "level-as-object": ("a region's level written as an object", _set(("regions", 0, "level"), {"country": 1}),
                        "level must be one of"),
    "region-as-list": ("a factor's region written as a list", _set(("factors", 0, "region"), ["CN"]),
                       "is not in the catalogue's regions"),
    "publication-as-object": ("a factor's publication written as an object",
                              _set(("factors", 0, "publication"), {"id": "x"}),
                              "is not in the catalogue's publications"),
}


def write(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (description, mutation, error) in CASES.items():
        doc = base()
        if mutation is not None:
            mutation(doc)
        case = {"description": description, "catalogue": doc, "expected": {"valid": error is None, "error": error}}
        (directory / f"{name}.json").write_text(json.dumps(case, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
    return len(CASES)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/conformance/factor-catalogue")
    sys.stdout.write(f"{write(out)} cases in {out}\n")
