"""Paged statements: a signed period summary over ordinary statements of consecutive sub-periods.

A month of 100 devices at 15-minute windows is 288,000 aggregates; one statement of it would be hundreds
of megabytes. The summary is ``{"format": "carbontrace-statement-summary", "version": 1, "summary": BODY,
"signature": SIG}``: BODY names the enterprise, the period and each page (its sub-period, the CID and sha256
of its canonical JSON, its figures) and carries the period's totals, factors and completeness; SIG is ES256
by a cloud key over the canonical JSON of BODY, like a statement's. Each page is a v2 statement
(carbontrace_protocol.statement) that a verifier checks on its own.

What ``verify_summary`` checks, each failure naming its step (docs/proof-bundle.md, "Paged statements"):
- bundle_format: exact fields and types.
- summary_signature: the kid names a cloud key found in a page's bundle, active on chain now; it verifies.
- summary_pages: the pages tile [start, end) exactly, in order; each page given hashes (sha256 and CID of
  its canonical JSON) to what the summary lists, is the enterprise's statement over the listed sub-period
  with the listed figures, and verifies as a statement (a page's own failure keeps its step).
- summary_figures: totals are the sums of the page figures (tonnes recomputed), factors the protocol
  table's entries for the factors the totals use; the market-based total (``market_based``, when every page
  has one) the sum of the pages' market-based emissions, each page's as its statement states it.
- summary_completeness: every page lists the summary's gateways and devices; per gateway the batch chain
  continues from page to page (the next page starts at a batch the previous page holds, or at the
  successor of its last batch, whose header's ``prev`` is that batch's hash); the per-gateway and
  per-device figures are the pages'.
A page not given is the verdict ``incomplete`` (what was given is still checked), never ``valid``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from carbontrace_protocol import attribution, market_based, strict_json
from carbontrace_protocol.batch import header_hash, parse_header
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.proof_bundle import BundleFormatError, KeyEntry, ProofBundle, Trust, exact_fields
from carbontrace_protocol.proof_verify import (
    CachedChainReader,
    ChainReader,
    CheckFailed,
    Report,
    Step,
    invalid_report,
)
from carbontrace_protocol.statement import (
    check_cloud_signature,
    factor_entries,
    signature_hex,
    tonnes,
    verify_statement,
)

SUMMARY_FORMAT = "carbontrace-statement-summary"
SUMMARY_VERSION = 1
DOCUMENT_FIELDS = ("format", "version", "summary", "signature")
BODY_FIELDS = ("enterprise_id", "period", "pages", "figures", "factors", "completeness")
PAGE_FIELDS = ("start", "end", "cid", "sha256", "figures")
MARKET_KEY = "market_based"  # optional: a page's market-based emissions; the summary's total (below)
GATEWAY_FIELDS = ("gateway_id", "first_seq", "last_seq", "closed")
DEVICE_FIELDS = ("device_id", "expected", "received", "windows")
SIGNATURE_FIELDS = ("alg", "kid", "value")
# the figure fields a statement carries that add up across pages (emissions_t_co2 is recomputed from the sum)
SUMMED_FIGURES = (
    "energy_wh",
    "emissions_g_e4",
    "expected_readings",
    "received_readings",
    "missing_by_seq",
    "aggregates",
)


def page_bytes(page: Any) -> bytes:
    """The bytes a page is stored, hashed and named by: its canonical JSON."""
    return strict_json.canonical(page)


def page_entry(page: dict[str, Any], cid: str) -> dict[str, Any]:
    """The summary's line for a page whose canonical bytes the content store named ``cid``; with the page's
    market-based emissions when it has a market_based section (carbontrace_protocol/market_based.py)."""
    body = page["statement"]
    entry = {
        "start": body["period"]["start"],
        "end": body["period"]["end"],
        "cid": cid,
        "sha256": hashlib.sha256(page_bytes(page)).hexdigest(),
        "figures": body["figures"],
    }
    if MARKET_KEY in body:
        entry[MARKET_KEY] = body[MARKET_KEY]["emissions"]
    return entry


def total_market_based(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The summary's market-based total: the sum of its pages' (each page applies the rule to its own
    sub-period, so an instrument's share of a page beyond that page's measured energy is not used), or None
    when a page has none."""
    if not entries or any(MARKET_KEY not in e for e in entries):
        return None
    grams = sum(int(e[MARKET_KEY]["g_e4"]) for e in entries)
    return {"emissions": market_based.emissions_figure(grams)}


def total_figures(page_figures: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The period's figures as the sums of its pages' (same fields as a statement's)."""
    sums = dict.fromkeys(SUMMED_FIGURES, 0)
    by_factor: dict[str, int] = {}
    pages = list(page_figures)
    for figures in pages:
        for name in SUMMED_FIGURES:
            sums[name] += int(figures[name])
        for factor_id, grams in dict(figures["emissions_g_e4_by_factor"]).items():
            by_factor[str(factor_id)] = by_factor.get(str(factor_id), 0) + int(grams)
    return {
        "energy_wh": sums["energy_wh"],
        "emissions_g_e4": sums["emissions_g_e4"],
        "emissions_t_co2": tonnes(sums["emissions_g_e4"]),
        "emissions_g_e4_by_factor": dict(sorted(by_factor.items())),
        "expected_readings": sums["expected_readings"],
        "received_readings": sums["received_readings"],
        "missing_by_seq": sums["missing_by_seq"],
        "aggregates": sums["aggregates"],
        "attribution": attribution.sum_figures(f["attribution"] for f in pages),
    }


def total_factors(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each factor the totals use, with the protocol table's provenance (as a statement's ``factors``)."""
    return factor_entries({factor_id: {} for factor_id in figures["emissions_g_e4_by_factor"]})


class CompletenessTotals:
    """Per-gateway chain ends and per-device counts folded over the pages' completeness, in page order
    (the cloud folds as it builds, the verifier as it checks: one page in memory at a time)."""

    def __init__(self) -> None:
        self.gateways: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, dict[str, int]] = {}
        self.lists: tuple[list[str], list[str]] | None = None

    def add(self, completeness: dict[str, Any]) -> None:
        gateways = [str(g["gateway_id"]) for g in completeness["gateways"]]
        devices = [str(d["device_id"]) for d in completeness["devices"]]
        if self.lists is None:
            self.lists = (gateways, devices)
        elif self.lists != (gateways, devices):
            raise ValueError("a page lists other gateways or devices than the first page")
        for g in completeness["gateways"]:
            entry = self.gateways.setdefault(
                g["gateway_id"],
                {"gateway_id": g["gateway_id"], "first_seq": None, "last_seq": None, "closed": False},
            )
            if g["first_seq"] is not None and entry["first_seq"] is None:
                entry["first_seq"] = g["first_seq"]
            if g["last_seq"] is not None:
                entry["last_seq"] = g["last_seq"]
            entry["closed"] = g["closed"]
        for d in completeness["devices"]:
            counts = self.devices.setdefault(d["device_id"], {"expected": 0, "received": 0, "windows": 0})
            for name in ("expected", "received", "windows"):
                counts[name] += int(d[name])

    def to_json(self) -> dict[str, Any]:
        gateways, devices = self.lists or ([], [])
        return {
            "gateways": [self.gateways[g] for g in gateways],
            "devices": [{"device_id": d, **self.devices[d]} for d in devices],
        }


@dataclass(frozen=True)
class ChainEnds:
    """A page's batch chain for one gateway: every (seq → signed header) and its last batch."""

    headers: dict[int, bytes]
    first: tuple[int, dict[str, Any]]
    last: tuple[int, bytes]


def chain_ends(bundle: ProofBundle) -> dict[str, ChainEnds]:
    by_gateway: dict[str, dict[int, tuple[bytes, dict[str, Any]]]] = {}
    for batch in bundle.batches:
        try:
            _, header = parse_header(batch.signed_header)
        except ProtocolError as err:
            raise CheckFailed("summary_completeness", f"batch {batch.batch_id}: {err}") from err
        by_gateway.setdefault(header["gateway"], {})[header["batch_seq"]] = (batch.signed_header, header)
    out = {}
    for gateway_id, rows in by_gateway.items():
        first, last = min(rows), max(rows)
        out[gateway_id] = ChainEnds(
            {seq: signed for seq, (signed, _) in rows.items()}, (first, rows[first][1]), (last, rows[last][0])
        )
    return out


def check_continues(gateway_id: str, before: ChainEnds, after: ChainEnds) -> None:
    """The next page's chain starts at a batch the previous page holds (same signed header) or at the
    successor of its last batch (its header's ``prev`` the hash of that batch's signed header)."""
    (first_seq, first_header), (last_seq, last_signed) = after.first, before.last
    if first_seq in before.headers:
        if after.headers[first_seq] != before.headers[first_seq]:
            raise CheckFailed(
                "summary_completeness", f"gateway {gateway_id}: two pages hold different batch {first_seq}"
            )
        return
    if first_seq != last_seq + 1 or bytes(first_header["prev"]) != header_hash(last_signed):
        raise CheckFailed(
            "summary_completeness",
            f"gateway {gateway_id}: the page's chain starts at batch {first_seq}, which does not follow "
            f"batch {last_seq} of the page before (a batch is missing between pages)",
        )


@dataclass(frozen=True)
class _Parsed:
    body: dict[str, Any]
    signature: dict[str, Any]
    kid: bytes
    value: bytes
    start: int
    end: int
    pages: list[dict[str, Any]]


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise BundleFormatError(f"{what} must be an unsigned JSON integer")
    return value


def _parse(document: Any) -> _Parsed:
    doc = exact_fields(document, "summary document", DOCUMENT_FIELDS)
    if doc["format"] != SUMMARY_FORMAT or type(doc["version"]) is not int or doc["version"] != SUMMARY_VERSION:
        raise BundleFormatError(f"not a {SUMMARY_FORMAT} v{SUMMARY_VERSION}")
    optional = (MARKET_KEY,) if isinstance(doc["summary"], dict) and MARKET_KEY in doc["summary"] else ()
    body = exact_fields(doc["summary"], "summary", (*BODY_FIELDS, *optional))
    signature = exact_fields(doc["signature"], "signature", SIGNATURE_FIELDS)
    if not isinstance(body["enterprise_id"], str):
        raise BundleFormatError("summary.enterprise_id must be a string")
    period = exact_fields(body["period"], "summary.period", ("start", "end"))
    start, end = _uint(period["start"], "summary.period.start"), _uint(period["end"], "summary.period.end")
    if not isinstance(body["pages"], list) or not body["pages"]:
        raise BundleFormatError("summary.pages must be a non-empty list")
    pages = []
    for i, page in enumerate(body["pages"]):
        marked = (MARKET_KEY,) if isinstance(page, dict) and MARKET_KEY in page else ()
        entry = exact_fields(page, f"summary.pages[{i}]", (*PAGE_FIELDS, *marked))
        _uint(entry["start"], f"summary.pages[{i}].start")
        _uint(entry["end"], f"summary.pages[{i}].end")
        if not isinstance(entry["cid"], str) or not isinstance(entry["sha256"], str):
            raise BundleFormatError(f"summary.pages[{i}] cid and sha256 must be strings")
        if not isinstance(entry["figures"], dict):
            raise BundleFormatError(f"summary.pages[{i}].figures must be an object")
        pages.append(entry)
    for what in ("figures",):
        if not isinstance(body[what], dict):
            raise BundleFormatError(f"summary.{what} must be an object")
    if not isinstance(body["factors"], list):
        raise BundleFormatError("summary.factors must be a list")
    completeness = exact_fields(body["completeness"], "summary.completeness", ("gateways", "devices"))
    if not isinstance(completeness["gateways"], list) or not isinstance(completeness["devices"], list):
        raise BundleFormatError("summary.completeness gateways and devices must be lists")
    for g in completeness["gateways"]:
        exact_fields(g, "summary gateway", GATEWAY_FIELDS)
    for d in completeness["devices"]:
        exact_fields(d, "summary device", DEVICE_FIELDS)
    kid, value = signature_hex(signature["kid"], 32), signature_hex(signature["value"], 64)
    return _Parsed(body, signature, kid, value, start, end, pages)


def _check_tiling(parsed: _Parsed) -> None:
    at = parsed.start
    for i, page in enumerate(parsed.pages):
        if page["start"] != at or page["end"] <= page["start"]:
            raise CheckFailed(
                "summary_pages",
                f"page {i} covers [{page['start']}, {page['end']}), the pages must tile the period and it "
                f"should start at {at} (a gap or an overlap between pages)",
            )
        at = page["end"]
    if at != parsed.end:
        raise CheckFailed("summary_pages", f"the pages end at {at}, the period at {parsed.end}")


def _check_figures(parsed: _Parsed) -> None:
    step = "summary_figures"
    try:
        figures = total_figures(p["figures"] for p in parsed.pages)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckFailed(step, f"a page's figures cannot be summed: {err}") from err
    if strict_json.canonical(parsed.body["figures"]) != strict_json.canonical(figures):
        raise CheckFailed(step, f"the totals are not the sums of the pages' figures: recomputed {figures}")
    factors = total_factors(figures)
    if strict_json.canonical(parsed.body["factors"]) != strict_json.canonical(factors):
        raise CheckFailed(step, "the factors are not the protocol table's entries for the factors the totals use")
    try:
        market = total_market_based(parsed.pages)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckFailed(step, f"a page's market-based emissions cannot be summed: {err}") from err
    if strict_json.canonical(parsed.body.get(MARKET_KEY)) != strict_json.canonical(market):
        raise CheckFailed(step, f"the market-based total is not the sum of the pages': recomputed {market}")


def _page_document(page: Any, entry: dict[str, Any], index: int) -> dict[str, Any]:
    """A given page checked against its summary line (bytes, enterprise, sub-period, figures)."""
    step = "summary_pages"
    blob = page_bytes(page)
    if hashlib.sha256(blob).hexdigest() != entry["sha256"] or cid_for(blob) != entry["cid"]:
        raise CheckFailed(step, f"page {index} ({entry['cid']}) is not the page the summary lists (sha256 or CID)")
    return page  # type: ignore[no-any-return]


def _check_page_line(parsed: _Parsed, page: dict[str, Any], entry: dict[str, Any], index: int) -> None:
    body = page["statement"]
    if body["enterprise_id"] != parsed.body["enterprise_id"]:
        raise CheckFailed("summary_pages", f"page {index} is a statement of another enterprise")
    if (body["period"]["start"], body["period"]["end"]) != (entry["start"], entry["end"]):
        raise CheckFailed("summary_pages", f"page {index} covers another period than the summary lists")
    if strict_json.canonical(body["figures"]) != strict_json.canonical(entry["figures"]):
        raise CheckFailed("summary_pages", f"page {index}'s figures are not the ones the summary lists")
    stated = body[MARKET_KEY]["emissions"] if isinstance(body.get(MARKET_KEY), dict) else None
    if strict_json.canonical(stated) != strict_json.canonical(entry.get(MARKET_KEY)):
        raise CheckFailed("summary_pages", f"page {index}'s market-based emissions are not the ones the summary lists")


def _cloud_keys(page: Any) -> list[KeyEntry]:
    """The cloud keys a page's bundle carries (the summary's public key; the chain decides if it counts)."""
    try:
        return [k for k in ProofBundle.from_json(page["bundle"]).keys if k.kind == "cloud"]
    except (BundleFormatError, TypeError, KeyError):
        return []


def verify_summary(
    summary: Any, pages: Mapping[str, Any], chain: ChainReader, trust: Trust, verify_pages: bool = True
) -> Report:
    """Every check of a period summary and of the pages given (``pages``: page document by CID). Raises
    ChainUnreachable if the chain is down. ``verify_pages=False`` skips re-verifying each page as a
    statement (only for a caller that just did)."""
    started = time.perf_counter()
    cached = chain if isinstance(chain, CachedChainReader) else CachedChainReader(chain)
    steps: list[Step] = []
    try:
        try:
            parsed = _parse(summary)
        except (BundleFormatError, ValueError) as err:
            raise CheckFailed("bundle_format", str(err)) from err
        steps.append(Step("bundle_format", True, f"{SUMMARY_FORMAT} v{SUMMARY_VERSION}, {len(parsed.pages)} page(s)"))
        missing = [e["cid"] for e in parsed.pages if e["cid"] not in pages]
        if len(missing) == len(parsed.pages):
            return Report("incomplete", None, "no page given: nothing proves the summary", [], steps, _ms(started))
        check_cloud_signature(
            "summary_signature",
            "summary",
            parsed.signature["alg"],
            parsed.kid,
            parsed.value,
            parsed.body,
            _cloud_keys(next(pages[e["cid"]] for e in parsed.pages if e["cid"] in pages)),
            cached,
        )
        steps.append(Step("summary_signature", True, "ES256 by a cloud key active on chain, over the canonical JSON"))
        _check_tiling(parsed)
        _check_figures(parsed)
        folded = CompletenessTotals()
        previous: dict[str, ChainEnds] | None = None
        pending = False
        incomplete_pages: list[int] = []  # a page that leaves leaves out (withheld, unproven) leaves the summary out
        for index, entry in enumerate(parsed.pages):
            if entry["cid"] not in pages:
                previous = None  # the chain cannot be followed across a missing page
                continue
            page = _page_document(pages[entry["cid"]], entry, index)
            if verify_pages:
                report = verify_statement(page, cached, trust)
                if report.status == "invalid":
                    raise CheckFailed(report.failed_step or "bundle_format", f"page {index}: {report.detail}")
                pending = pending or report.status == "pending"
                if report.status == "incomplete":
                    incomplete_pages.append(index)
            _check_page_line(parsed, page, entry, index)
            bundle = ProofBundle.from_json(page["bundle"])
            try:
                folded.add(page["statement"]["completeness"])
            except ValueError as err:
                raise CheckFailed("summary_completeness", f"page {index}: {err}") from err
            ends = chain_ends(bundle)
            if previous is not None:
                for gateway_id, before in previous.items():
                    after = ends.get(gateway_id)
                    if after is None:
                        raise CheckFailed(
                            "summary_completeness", f"gateway {gateway_id}: page {index} drops its batch chain"
                        )
                    check_continues(gateway_id, before, after)
            previous = ends
        given = len(parsed.pages) - len(missing)
        steps.append(Step("summary_pages", True, f"{given} page(s) verified, tiling the period"))
        steps.append(Step("summary_figures", True, "totals are the sums of the page figures"))
        if not missing:
            summary_listed = parsed.body["completeness"]
            if strict_json.canonical(summary_listed) != strict_json.canonical(folded.to_json()):
                raise CheckFailed("summary_completeness", "the completeness section is not the pages' folded together")
            steps.append(Step("summary_completeness", True, "every gateway's chain continues across the pages"))
    except CheckFailed as failure:
        return invalid_report(failure, steps, started)
    if missing:
        return Report("incomplete", None, f"{len(missing)} page(s) not given: {missing}", [], steps, _ms(started))
    if incomplete_pages:
        detail = f"page(s) {incomplete_pages} incomplete (leaves withheld from this caller or not proven)"
        return Report("incomplete", None, detail, [], steps, _ms(started))
    if pending:
        return Report("pending", None, "some batches are not anchored yet", [], steps, _ms(started))
    detail = f"{len(parsed.pages)} page(s), {parsed.body['figures']['aggregates']} aggregate(s) verified"
    return Report("valid", None, detail, [], steps, _ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
