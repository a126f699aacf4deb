"""The enterprise period statement: one definition for the cloud that signs it and every verifier.

A statement is ``{"format": "carbontrace-statement", "version": 2, "statement": BODY, "signature": SIG,
"bundle": BUNDLE}``. BUNDLE is a proof bundle (carbontrace_protocol.proof_bundle) whose query is the
enterprise, the period and the type ``aggregates``; BODY holds the figures an auditor reads; SIG is ES256
by a cloud key over the canonical JSON of BODY (strict_json.canonical), naming the key by fingerprint.

What a verifier checks (docs/proof-bundle.md, "Statements"), each failure naming its step:
- statement_signature: exact fields; the key is a cloud key in the bundle and active on chain now; the
  signature verifies; ``bundle_sha256`` is sha256 of the canonical JSON of BUNDLE.
- query_match (statement level): BODY's enterprise and period are the bundle query's, types = aggregates.
- statement_figures: every figure recomputed from the bundle's aggregate leaves, each factor's value equal
  to the leaves' and its entry (kind, region, reporting year, official source) the factor catalogue's, valid
  on the issue date; every aggregate was received or used in the period. Energy is attributed to the time it
  was used and gaps substituted by carbontrace_protocol/attribution.py (``figures.attribution``: measured,
  interpolated and substituted energy, emissions in tCO2 with their method); a format-2 aggregate (no
  measurement-time runs) counts whole in the period holding its window, and a window that straddles a
  boundary is not summed into either side. A restated statement (its ``restatement`` key) has its figures
  recomputed with newer factors by carbontrace_protocol/restatement.py.
- statement_completeness: every gateway and device the chain lists for the enterprise appears; for each
  gateway, the bundle's batches form an unbroken chain (consecutive batch_seq, each header's ``prev`` the
  hash of the one before); ``closed`` says whether the chain reaches a batch past the period's end.
- then the bundle itself (verify_bundle), so every leaf is proven to an anchor;
- statement_market_based, last (a statement with a ``market_based`` section): the market-based Scope 2 figure
  recomputed by carbontrace_protocol/market_based.py from the bundle's proven energy per site, the
  contractual instruments the section lists (each record's sha256 its canonical JSON's) and the factor
  catalogue's residual mix.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import itertools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from carbontrace_protocol import attribution, market_based, strict_json
from carbontrace_protocol.batch import MAX_TIME, ZERO_HASH, header_hash, parse_header
from carbontrace_protocol.emission_factors import EmissionFactor, get_factor, load_catalogue
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.ids import CLOUD_SIGNER, SIGNER_CLOUD, SIGNER_DEVICE, SIGNER_GATEWAY, chain_id_of
from carbontrace_protocol.proof_bundle import BundleFormatError, ItemEntry, KeyEntry, ProofBundle, Trust, exact_fields
from carbontrace_protocol.proof_verify import (
    CachedChainReader,
    ChainReader,
    CheckFailed,
    Report,
    Step,
    check_key_on_chain,
    invalid_report,
    verify_bundle,
)
from carbontrace_protocol.verify import verify_es256
from carbontrace_protocol.views import KIND_AGGREGATE, DataType, leaf_content, leaf_time

STATEMENT_FORMAT = "carbontrace-statement"
STATEMENT_VERSION = 3  # 3: figures attributed by measurement time, with measured and substituted shares
STATEMENT_TYPES = frozenset({DataType.AGGREGATES})
DOCUMENT_FIELDS = ("format", "version", "statement", "signature", "bundle")
MAX_ISSUED_AT = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second a calendar date can be given for
BODY_FIELDS = ("enterprise_id", "period", "issued_at", "figures", "factors", "completeness", "bundle_sha256")
SIGNATURE_FIELDS = ("alg", "kid", "value")
RESTATEMENT_KEY = "restatement"  # present only in a restated statement (carbontrace_protocol/restatement.py)
GRAMS_E4_PER_TONNE = 10**10  # emissions are exact integers of 1e-4 g; a tonne is 1e6 g
# a statement's checks read each aggregate leaf three times (window, figures, completeness counts); decoded
# once per leaf, held for a page's worth of leaves (a day of 100 devices at 15-minute windows is 9,600)
@functools.lru_cache(maxsize=16_384)
def _opened_content(leaf: bytes, openings: tuple[tuple[str, bytes], ...]) -> tuple[str, dict[str, Any]]:
    return leaf_content(leaf, dict(openings))


def item_content(item: ItemEntry) -> tuple[str, dict[str, Any]]:
    """(kind, fields) of an item's leaf with the fields its openings disclose (a statement's query type,
    aggregates, opens the public fields: completeness, energy, factor, emissions; CO2 stays closed)."""
    return _opened_content(item.leaf, item.openings)


def tonnes(grams_e4: int) -> str:
    """Tonnes CO2 from 1e-4 g, exact, as a fixed-point string with ten decimals ("0.0000185710"): integer
    arithmetic any verifier reproduces byte for byte (no float, no exponent form)."""
    sign = "-" if grams_e4 < 0 else ""
    whole, fraction = divmod(abs(grams_e4), GRAMS_E4_PER_TONNE)
    return f"{sign}{whole}.{fraction:010d}"


def figures_of(
    bundle: ProofBundle, until: int | None = None, factor_of: attribution.FactorOf | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """(figures, factors as the leaves state them, per-device counts) recomputed from the aggregate leaves.

    Energy and emissions are attributed to the time the energy was used (carbontrace_protocol/attribution.py:
    runs split at the period's bounds, gaps substituted up to ``until``, the statement's issue time); the
    reading counts are those of the aggregates received in the period (window start inside it), so adjacent
    periods never count an aggregate twice."""
    start = bundle.query.start if bundle.query.start is not None else 0
    end = bundle.query.end if bundle.query.end is not None else MAX_TIME
    expected = received = missing = aggregates = 0
    factors: dict[str, dict[str, Any]] = {}
    devices: dict[str, dict[str, int]] = {}
    opened: list[tuple[str, dict[str, Any]]] = []
    for item in bundle.items:
        if item.kind != KIND_AGGREGATE:
            continue
        _, body = item_content(item)
        opened.append((item.device_id, body))
        factor = body.get("factor")
        if isinstance(factor, dict) and isinstance(body.get("emissions_g"), dict):
            factors.setdefault(str(factor["id"]), factor["kg_per_kwh"])
        if not start <= int(body["window"][0]) < end:
            continue  # received in another period: its energy here is attributed, its counts are not
        counts = devices.setdefault(item.device_id, {"expected": 0, "received": 0, "windows": 0})
        counts["expected"] += int(body["expected"])
        counts["received"] += int(body["received"])
        counts["windows"] += 1
        expected += int(body["expected"])
        received += int(body["received"])
        missing += int(body["missing"])
        aggregates += 1
    attributed = attribution.attribute(opened, start, end, end if until is None else min(until, end), factor_of)
    total = attributed.measured_g_e4 + attributed.substituted_g_e4
    figures = {
        "energy_wh": attributed.measured_wh + attributed.substituted_wh,
        "emissions_g_e4": total,
        "emissions_t_co2": tonnes(total),
        "emissions_g_e4_by_factor": dict(sorted(attributed.by_factor.items())),
        "expected_readings": expected,
        "received_readings": received,
        "missing_by_seq": missing,
        "aggregates": aggregates,
        "attribution": attributed.figures(),
    }
    return figures, factors, devices


def factor_entry(factor: EmissionFactor) -> dict[str, Any]:
    """A factor as a statement names it: value, kind, region, reporting year, and its official source."""
    return {
        "id": factor.id,
        "kind": factor.kind,
        "kg_per_kwh_e4": factor.kg_per_kwh_e4,
        "unit": factor.unit,
        "gas": factor.gas,
        "region": {"code": factor.region.code, "name": factor.region.name},
        "reporting_year": factor.reporting_year,
        "valid_from": factor.valid_from.isoformat(),
        "source": factor.source.to_json(),
    }


UNKNOWN_FACTOR_FIELDS = ("kind", "kg_per_kwh_e4", "unit", "gas", "region", "reporting_year", "valid_from", "source")


def factor_entries(stated: Iterable[str]) -> list[dict[str, Any]]:
    """Each factor a statement uses, with the provenance the protocol's factor catalogue gives it (an id the
    catalogue lacks gets nulls, which no verifier accepts)."""
    out = []
    for factor_id in sorted(set(stated)):
        try:
            out.append(factor_entry(get_factor(factor_id)))
        except KeyError:
            out.append({"id": factor_id} | dict.fromkeys(UNKNOWN_FACTOR_FIELDS))
    return out


@dataclass(frozen=True)
class GatewayChain:
    gateway_id: str
    batches: int
    first_seq: int | None
    last_seq: int | None
    closed: bool  # the chain reaches a batch that starts at or after the period's end

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway_id": self.gateway_id,
            "batches": self.batches,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "closed": self.closed,
        }


def gateway_chains(bundle: ProofBundle, start: int, end: int) -> dict[str, GatewayChain]:
    """Each gateway's batches in the bundle as one unbroken chain; CheckFailed if a link is missing."""
    by_gateway: dict[str, list[tuple[int, bytes, dict[str, Any]]]] = {}
    for batch in bundle.batches:
        try:
            _, header = parse_header(batch.signed_header)
        except ProtocolError as err:
            raise CheckFailed("statement_completeness", f"batch {batch.batch_id}: {err}") from err
        by_gateway.setdefault(header["gateway"], []).append((header["batch_seq"], batch.signed_header, header))
    chains = {}
    for gateway_id, rows in by_gateway.items():
        rows.sort(key=lambda row: row[0])
        for (seq_a, signed_a, _), (seq_b, _, header_b) in itertools.pairwise(rows):
            if seq_b != seq_a + 1 or bytes(header_b["prev"]) != header_hash(signed_a):
                raise CheckFailed(
                    "statement_completeness",
                    f"gateway {gateway_id}: batch {seq_b} does not follow batch {seq_a} (a batch is missing)",
                )
        first_header, last_header = rows[0][2], rows[-1][2]
        opens = first_header["window"][0] <= start or bytes(first_header["prev"]) == ZERO_HASH
        if not opens:
            raise CheckFailed(
                "statement_completeness",
                f"gateway {gateway_id}: the chain starts at batch {rows[0][0]}, inside the period, "
                "without the batch before it",
            )
        chains[gateway_id] = GatewayChain(
            gateway_id, len(rows), rows[0][0], rows[-1][0], closed=last_header["window"][1] >= end
        )
    return chains


def signature_hex(value: Any, size: int) -> bytes:
    """Lowercase hex without 0x of ``size`` bytes, as every byte string of the format (not bytes.fromhex's
    leniency, which takes uppercase and spaces)."""
    if not isinstance(value, str) or not re.fullmatch(f"[0-9a-f]{{{2 * size}}}", value):
        raise BundleFormatError(f"signature kid and value must be {size} bytes of lowercase hex without 0x")
    return bytes.fromhex(value)


def check_cloud_signature(
    step: str,
    what: str,
    alg: Any,
    kid: bytes,
    value: bytes,
    body: Any,
    keys: Iterable[KeyEntry],
    chain: ChainReader,
) -> None:
    """ES256 over the canonical JSON of ``body`` by the cloud key ``kid`` (its public key one of ``keys``),
    which the chain lists as active now (a signed document is not anchored); CheckFailed at ``step``."""
    if alg != "ES256":
        raise CheckFailed(step, f"the {what} signature must be ES256")
    key = next((k for k in keys if k.fingerprint == kid and k.kind == "cloud"), None)
    if key is None or key.signer != CLOUD_SIGNER:
        raise CheckFailed(step, f"the signature's kid names no cloud key of the {what}'s bundle")
    if not verify_es256(key.public_key, strict_json.canonical(body), value):
        raise CheckFailed(step, f"cloud signature on the {what} does not verify")
    check_key_on_chain(step, chain, kid, SIGNER_CLOUD, CLOUD_SIGNER, None)


def verify_statement(document: Any, chain: ChainReader, trust: Trust) -> Report:
    """Every check of a signed statement, then of its bundle. Raises ChainUnreachable if the chain is down."""
    started = time.perf_counter()
    cached = chain if isinstance(chain, CachedChainReader) else CachedChainReader(chain)
    steps: list[Step] = []
    try:
        try:
            doc = exact_fields(document, "statement document", DOCUMENT_FIELDS)
            if (
                doc["format"] != STATEMENT_FORMAT
                or type(doc["version"]) is not int
                or doc["version"] != STATEMENT_VERSION
            ):
                raise BundleFormatError(f"not a {STATEMENT_FORMAT} v{STATEMENT_VERSION}")
            body = exact_fields(doc["statement"], "statement", body_fields(doc["statement"]))
            signature = exact_fields(doc["signature"], "signature", SIGNATURE_FIELDS)
            bundle = ProofBundle.from_json(doc["bundle"])
            period = exact_fields(body["period"], "statement.period", ("start", "end"))
            if any(type(period[k]) is not int or period[k] < 0 for k in ("start", "end")):
                raise BundleFormatError("statement.period start and end must be unsigned JSON integers")
            issued_at = body["issued_at"]
            if type(issued_at) is not int or not 0 <= issued_at <= MAX_ISSUED_AT:
                # every later step dates the issue (a factor's valid_from, the catalogue version's date)
                raise BundleFormatError(f"statement.issued_at must be a JSON integer from 0 to {MAX_ISSUED_AT} "
                                        "(unix seconds up to the end of year 9999)")
            kid, value = signature_hex(signature["kid"], 32), signature_hex(signature["value"], 64)
        except (BundleFormatError, ValueError) as err:
            raise CheckFailed("bundle_format", str(err)) from err
        steps.append(Step("bundle_format", True, f"{STATEMENT_FORMAT} v{STATEMENT_VERSION}"))
        step = "statement_signature"
        check_cloud_signature(step, "statement", signature["alg"], kid, value, body, bundle.keys, cached)
        if body["bundle_sha256"] != hashlib.sha256(strict_json.canonical(doc["bundle"])).hexdigest():
            raise CheckFailed(step, "bundle_sha256 is not the enclosed bundle's")
        steps.append(Step(step, True, "ES256 by a cloud key active on chain, over the canonical JSON"))
        step = "query_match"
        query = bundle.query
        if (body["enterprise_id"], period["start"], period["end"]) != (query.enterprise_id, query.start, query.end):
            raise CheckFailed(step, "the statement's enterprise or period is not its bundle's query")
        if query.types != STATEMENT_TYPES or query.site_id is not None or query.device_id is not None:
            raise CheckFailed(step, "a statement's bundle asks for all aggregates of the enterprise")
        steps.append(Step(step, True, f"enterprise {query.enterprise_id}, period [{query.start}, {query.end})"))
        start, end = int(period["start"]), int(period["end"])
        _check_figures(body, bundle, start, end)
        steps.append(Step("statement_figures", True, "every figure recomputed from its aggregate leaves"))
        steps.append(Step("statement_completeness", True, _check_completeness(body, bundle, cached, start, end)))
    except CheckFailed as failure:
        return invalid_report(failure, steps, started)
    report = verify_bundle(bundle, cached, trust)
    report.steps = steps + report.steps[1:]  # the bundle's own format step is already in ``steps``
    if report.status != "invalid" and market_based.SECTION_KEY in body:
        # last: the market-based figure is re-derived from energy the bundle has proven (its leaves, their
        # batches and the query's tenant checked), not from leaves that fail to prove
        try:
            report.steps.append(Step(market_based.STEP, True, _check_market_based(body, bundle, start, end)))
        except CheckFailed as failure:
            return invalid_report(failure, report.steps, started)
    report.verify_ms = (time.perf_counter() - started) * 1000
    return report


def _check_figures(body: dict[str, Any], bundle: ProofBundle, start: int, end: int) -> None:
    step = "statement_figures"
    for item in bundle.items:
        try:
            kind, content = item_content(item)
            covered = leaf_time(kind, content)
        except (ProtocolError, ValueError) as err:
            raise CheckFailed(step, f"an aggregate leaf does not decode: {err}") from err
        if covered[1] <= start or covered[0] >= end:  # neither received nor used in the period
            raise CheckFailed(step, f"aggregate of {covered} has nothing in the period [{start}, {end})")
    issued_at = body["issued_at"]
    if type(issued_at) is not int or issued_at < 0:
        raise CheckFailed(step, "issued_at must be an unsigned JSON integer")
    try:
        figures, stated_factors, _ = figures_of(bundle, issued_at)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckFailed(step, f"an aggregate's energy does not read: {err}") from err
    used = set(stated_factors)
    if RESTATEMENT_KEY in body:  # figures recomputed with newer factors: the restatement module's rule
        from carbontrace_protocol import restatement

        figures, used = restatement.check_restated(body, bundle, figures, issued_at)
    if not strict_json.canonical(body["figures"]) == strict_json.canonical(figures):
        raise CheckFailed(step, f"figures differ from the leaves: recomputed {figures}")
    _check_factor_entries(body, stated_factors, used)


def _check_factor_entries(body: dict[str, Any], stated: dict[str, dict[str, Any]], used: set[str]) -> None:
    step = "statement_figures"
    expected_factors = factor_entries(used)
    if strict_json.canonical(body["factors"]) != strict_json.canonical(expected_factors):
        raise CheckFailed(step, "the factors are not the catalogue's entries (value, region, year, source) for the "
                          "factors the figures use")
    issued = body["issued_at"]
    if type(issued) is not int or issued < 0:
        raise CheckFailed(step, "issued_at must be an unsigned JSON integer")
    issued_on = datetime.datetime.fromtimestamp(issued, datetime.UTC).date().isoformat()
    for entry in expected_factors:
        if entry["kg_per_kwh_e4"] is None:  # a figure whose factor has no published provenance is not auditable
            raise CheckFailed(step, f"factor {entry['id']!r} is not in the protocol's factor catalogue")
        if entry["valid_from"] > issued_on:
            raise CheckFailed(step, f"factor {entry['id']} is valid from {entry['valid_from']}, after the "
                              f"statement's issue date {issued_on}")
        leaf_value = stated.get(entry["id"])
        if leaf_value is not None and leaf_value != {"e": -4, "m": entry["kg_per_kwh_e4"]}:
            raise CheckFailed(step, f"factor {entry['id']}: the leaves use another value than the published one")


def body_fields(body: Any) -> tuple[str, ...]:
    """The exact fields of a statement body: BODY_FIELDS, ``restatement`` in a restated one and
    ``market_based`` in one with market-based Scope 2 figures (carbontrace_protocol/market_based.py)."""
    optional = (RESTATEMENT_KEY, market_based.SECTION_KEY)
    return (*BODY_FIELDS, *(k for k in optional if isinstance(body, dict) and k in body))


def _check_market_based(body: dict[str, Any], bundle: ProofBundle, start: int, end: int) -> str:
    """statement_market_based: the section recomputed from the bundle's proven energy, the instruments it
    lists and the factor catalogue (market_based.check_section)."""
    try:
        recomputed = market_based.check_section(body[market_based.SECTION_KEY], bundle, start, end,
                                                int(body["issued_at"]))
    except market_based.MarketBasedError as err:
        raise CheckFailed(market_based.STEP, str(err)) from err
    used = sum(len(site["instruments"]) for site in recomputed["sites"])
    residual = (f"the residual mix the rule gives with catalogue {recomputed['catalogue_version']} (this verifier "
                f"has {load_catalogue().version})")
    return (f"{recomputed['emissions']['t_co2']} tCO2 market-based, {recomputed['energy_wh']['instruments']} Wh "
            f"of {recomputed['energy_wh']['total']} Wh covered by {used} instrument(s), the rest at {residual}")


def completeness_of(
    bundle: ProofBundle, start: int, end: int, gateways: list[str], devices: list[str]
) -> dict[str, Any]:
    """The completeness section the cloud writes and the verifier recomputes (gateway and device lists are
    the chain's)."""
    chains = gateway_chains(bundle, start, end)
    _, _, counts = figures_of(bundle)
    return {
        "gateways": [
            (chains.get(g) or GatewayChain(g, 0, None, None, closed=False)).to_json() for g in sorted(gateways)
        ],
        "devices": [
            {"device_id": d, **counts.get(d, {"expected": 0, "received": 0, "windows": 0})} for d in sorted(devices)
        ],
    }


def _check_completeness(body: dict[str, Any], bundle: ProofBundle, chain: ChainReader, start: int, end: int) -> str:
    step = "statement_completeness"
    enterprise = chain_id_of(str(bundle.query.enterprise_id))
    listed = body["completeness"]
    try:
        listed = exact_fields(listed, "statement.completeness", ("gateways", "devices"))
        gateways = [
            exact_fields(g, "gateway", ("gateway_id", "batches", "first_seq", "last_seq", "closed"))
            for g in listed["gateways"]
        ]
        devices = [
            exact_fields(d, "device", ("device_id", "expected", "received", "windows")) for d in listed["devices"]
        ]
    except (BundleFormatError, TypeError) as err:
        raise CheckFailed(step, str(err)) from err
    names = {"gateways": [g["gateway_id"] for g in gateways], "devices": [d["device_id"] for d in devices]}
    for what, kind in (("gateways", SIGNER_GATEWAY), ("devices", SIGNER_DEVICE)):
        on_chain = {bytes(s) for s in chain.signers_of(enterprise, kind)}
        if any(not isinstance(n, str) for n in names[what]) or {chain_id_of(n) for n in names[what]} != on_chain:
            raise CheckFailed(step, f"the statement's {what} are not the ones the chain lists for the enterprise")
    recomputed = completeness_of(bundle, start, end, names["gateways"], names["devices"])
    if strict_json.canonical(listed) != strict_json.canonical(recomputed):
        raise CheckFailed(step, "the completeness section differs from the bundle's batches and leaves")
    open_chains = [g["gateway_id"] for g in recomputed["gateways"] if not g["closed"]]
    closed = (
        "every gateway's chain is closed" if not open_chains else f"open (no batch past the end yet): {open_chains}"
    )
    return f"{len(gateways)} gateway chain(s) unbroken, {len(devices)} device(s) accounted for; {closed}"
