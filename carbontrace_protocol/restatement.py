"""Restatement: a period's statement recomputed with newer official factors, from the same activity data.

When a newer publication of a factor enters the catalogue (carbontrace_protocol/data/emission_factors.json),
the statement of a period already issued is restated: the same bundle (the same aggregate leaves, still
proven to the chain; their energy is the activity data) with each leaf's emissions recomputed as
``delta_wh × newer factor``. The restated body is a statement body plus

    "restatement": {"restates": {"statement_sha256": HEX, "issued_at": INT},
                    "factor_changes": [{"activity_year": Y, "from": OLD_ID, "to": NEW_ID}, ...]}

``statement_sha256`` is sha256 of the canonical JSON of the whole original document. Which factor replaces
which is not the issuer's choice: for each leaf, the rule of carbontrace_protocol.factor_rule.newest_for_region
(same region and kind, most recent reporting year at or before the window's year, valid on the restated
statement's issue date), so every verifier recomputes ``factor_changes`` from its own catalogue. A
restatement that changes no factor is refused: there is nothing to restate.

The cloud builds restatements with ``restated_body``; verifiers check them with ``check_restated`` (called
from carbontrace_protocol/statement.py) and, given the original, ``check_restates``.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from carbontrace_protocol import strict_json
from carbontrace_protocol.emission_factors import Catalogue, load_catalogue
from carbontrace_protocol.factor_rule import activity_year, newest_for_region
from carbontrace_protocol.proof_bundle import BundleFormatError, ProofBundle, exact_fields
from carbontrace_protocol.proof_verify import CheckFailed
from carbontrace_protocol.statement import RESTATEMENT_KEY, item_content
from carbontrace_protocol.views import KIND_AGGREGATE

STEP = "statement_figures"
SECTION_FIELDS = ("restates", "factor_changes")
RESTATES_FIELDS = ("statement_sha256", "issued_at")
CHANGE_FIELDS = ("activity_year", "from", "to")


class NothingToRestate(ValueError):
    """No factor of the statement has a newer publication valid on the restatement's date."""


def document_sha256(document: Any) -> str:
    return hashlib.sha256(strict_json.canonical(document)).hexdigest()


def _leaves(bundle: ProofBundle) -> list[tuple[str, int, int]]:
    """(factor id, activity year, delta_wh) of every aggregate leaf that states energy and a factor."""
    out = []
    for item in bundle.items:
        if item.kind != KIND_AGGREGATE:
            continue
        _, body = item_content(item)
        energy, factor = body.get("energy"), body.get("factor")
        if isinstance(energy, dict) and isinstance(factor, dict) and isinstance(body.get("emissions_g"), dict):
            out.append((str(factor["id"]), activity_year(int(body["window"][0])), int(energy["delta_wh"])))
    return out


def factor_changes(bundle: ProofBundle, issued_at: int, catalogue: Catalogue | None = None) -> list[dict[str, Any]]:
    """Each (leaf factor, activity year) the rule maps to a newer factor with ``catalogue`` (the protocol's
    when None), sorted."""
    catalogue = catalogue or load_catalogue()
    on = datetime.datetime.fromtimestamp(issued_at, datetime.UTC).date()
    changes = set()
    for factor_id, year, _ in _leaves(bundle):
        used = catalogue.factors.get(factor_id)
        if used is None:
            raise CheckFailed(STEP, f"factor {factor_id!r} is not in the protocol's factor catalogue")
        newer = newest_for_region(catalogue, used, year, on)
        if newer.id != used.id:
            changes.add((year, used.id, newer.id))
    return [{"activity_year": y, "from": a, "to": b} for y, a, b in sorted(changes)]


def restated_figures(
    bundle: ProofBundle, figures: dict[str, Any], changes: list[dict[str, Any]], until: int,
    catalogue: Catalogue | None = None,
) -> tuple[dict[str, Any], set[str]]:
    """``figures`` (as statement.figures_of gives them) recomputed with each leaf's restated factor: the same
    attribution by measurement time (energy, shares, substitution), the emissions under the new factors; and
    the ids of every factor the restated statement names (leaves' and new)."""
    from carbontrace_protocol.statement import figures_of

    catalogue = catalogue or load_catalogue()
    replaced = {(c["activity_year"], c["from"]): c["to"] for c in changes}
    named: set[str] = set()

    def restated_factor(factor_id: str, window_start: int) -> tuple[str, int]:
        now = replaced.get((activity_year(window_start), factor_id), factor_id)
        named.update((factor_id, now))
        return now, catalogue.factors[now].kg_per_kwh_e4

    restated, _, _ = figures_of(bundle, until, restated_factor)
    if restated["energy_wh"] != figures["energy_wh"]:  # same activity: only the factors change
        raise CheckFailed(STEP, "a restatement recomputes the same energy")
    return restated, named


def restated_body(original: dict[str, Any], bundle: ProofBundle, figures: dict[str, Any], issued_at: int,
                  factor_entries: Any) -> dict[str, Any]:
    """The body of the restatement of the ``original`` statement document, issued at ``issued_at``; raises
    NothingToRestate when no factor changed. ``factor_entries`` is statement.factor_entries."""
    changes = factor_changes(bundle, issued_at)
    already = original["statement"].get(RESTATEMENT_KEY, {}).get("factor_changes")
    if not changes or changes == already:  # a restatement already applying every newer factor
        raise NothingToRestate("no factor of this statement has a newer publication valid today")
    restated, named = restated_figures(bundle, figures, changes, issued_at)
    body = dict(original["statement"])
    body.pop(RESTATEMENT_KEY, None)
    body.update(
        issued_at=issued_at,
        figures=restated,
        factors=factor_entries(named),
    )
    body[RESTATEMENT_KEY] = {
        "restates": {"statement_sha256": document_sha256(original), "issued_at": original["statement"]["issued_at"]},
        "factor_changes": changes,
    }
    return body


def check_restated(
    body: dict[str, Any], bundle: ProofBundle, figures: dict[str, Any], until: int
) -> tuple[dict[str, Any], set[str]]:
    """The verifier's side: the restatement section is well formed, its factor changes are exactly the rule's
    for this bundle on the body's issue date, and not empty. Returns the restated figures and factor ids the
    body must state (statement.py compares them)."""
    try:
        section = exact_fields(body[RESTATEMENT_KEY], "statement.restatement", SECTION_FIELDS)
        restates = exact_fields(section["restates"], "statement.restatement.restates", RESTATES_FIELDS)
        if not isinstance(section["factor_changes"], list):
            raise BundleFormatError("statement.restatement.factor_changes must be a list")
        for change in section["factor_changes"]:
            exact_fields(change, "statement.restatement.factor_changes[]", CHANGE_FIELDS)
    except BundleFormatError as err:
        raise CheckFailed(STEP, str(err)) from err
    sha = restates["statement_sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise CheckFailed(STEP, "restatement.restates.statement_sha256 must be 32 bytes of lowercase hex")
    original_issued = restates["issued_at"]
    if type(original_issued) is not int or type(body["issued_at"]) is not int or original_issued >= body["issued_at"]:
        raise CheckFailed(STEP, "a restatement is issued after the statement it restates (integer issued_at)")
    catalogue = _catalogue_of(body)
    expected = factor_changes(bundle, body["issued_at"], catalogue)
    if not expected:
        raise CheckFailed(STEP, "a restatement must change a factor; no newer factor applies on its issue date")
    if strict_json.canonical(section["factor_changes"]) != strict_json.canonical(expected):
        raise CheckFailed(STEP, f"the factor changes are not the catalogue rule's: expected {expected}")
    return restated_figures(bundle, figures, expected, until, catalogue)


def _catalogue_of(body: dict[str, Any]) -> Catalogue:
    """The catalogue a restated body was computed with: as of the version its ``market_based`` section names
    (market_based.stated_catalogue: so a verifier with a newer version recomputes the issuer's changes, not
    ones a later factor would give), else the verifier's own (a body without the section names none)."""
    from carbontrace_protocol import market_based

    if market_based.SECTION_KEY not in body:
        return load_catalogue()
    try:
        return market_based.stated_catalogue(body[market_based.SECTION_KEY], body["issued_at"])
    except market_based.MarketBasedError as err:
        raise CheckFailed(STEP, str(err)) from err


def check_restates(original: Any, restated: Any) -> None:
    """The link between a restated statement and the original it names (both already verified on their
    own): its hash, the same enterprise, period and bundle (so the same activity data). CheckFailed if not."""
    step = "restatement_link"
    try:
        body = restated["statement"]
        section = body[RESTATEMENT_KEY]
        first = original["statement"]
    except (KeyError, TypeError) as err:
        raise CheckFailed(step, "not a restated statement and a statement") from err
    if section["restates"]["statement_sha256"] != document_sha256(original):
        raise CheckFailed(step, "the restated statement names another statement (sha256 differs)")
    if section["restates"]["issued_at"] != first["issued_at"]:
        raise CheckFailed(step, "the restated statement names another issue time than the original's")
    for key in ("enterprise_id", "period", "bundle_sha256", "completeness"):
        if strict_json.canonical(body[key]) != strict_json.canonical(first[key]):
            raise CheckFailed(step, f"the restated statement's {key} is not the original's (other activity data)")
