"""Paged statements: a signed period summary over hourly statement pages, and every way to forge one.

The data: six hours of 15-minute batches from one gateway (two devices), a batch past the end so every
chain closes, and a second tenant with the same schedule. Forgeries are made by an insider holding the
real cloud key (ledger_of(client).signing_key), so every re-signed summary or page has a valid signature.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import p256, strict_json
from carbontrace_protocol.batch import parse_header
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.proof_verify import EXIT_INCOMPLETE, STEP_EXIT
from carbontrace_protocol.statement import completeness_of, verify_statement
from carbontrace_protocol.statement_summary import (
    CompletenessTotals,
    page_entry,
    total_factors,
    total_figures,
    total_market_based,
    verify_summary,
)
from cloud import models
from tests.cloud.cloud_testkit import openssl_sign_reading, register_tenant, upload
from tests.conftest import REPO_ROOT
from tests.trace.test_trace_statements import _prune, _resign
from tests.trace.test_trace_verifier_cli import served_app  # noqa: F401 - the fixture
from tests.trace.trace_kit import Traced, anchor, get, ledger_of, reader_of, trust_of

HOUR = 3600
WINDOW = 900
HOURS = 6
T0 = 1_700_003_600  # a whole hour


def _fill(client: TestClient, name: str, hours: int = HOURS) -> Traced:
    traced = Traced(register_tenant(client, name))
    gw = traced.tenant.gateway
    gw.window_start = T0
    for _ in range(hours * HOUR // WINDOW + 1):  # one batch past the end closes the chain
        batch, readings = gw.build(per_device=1, window_s=WINDOW, signer=openssl_sign_reading)
        r = upload(client, gw, batch)
        assert r.status_code == 201, r.text
        gw.accepted(batch, readings)
        gw.window_start += WINDOW - 60  # accepted() moves on by 60 s
        traced.batches.append(batch)
    return traced


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.cloud.cloud_testkit import app_client, make_settings

    with app_client(make_settings(tmp_path_factory.mktemp("summaries"))) as client:
        ours, theirs = _fill(client, "Summary Ours"), _fill(client, "Summary Theirs")
        anchor(client)
        yield client, ours, theirs


def _summary(client: TestClient, traced: Traced, hours: int = HOURS) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, pages by CID) as an auditor downloads them."""
    key = traced.tenant.enterprise_key
    r = get(
        client,
        f"/api/v1/enterprises/{traced.tenant.enterprise_id}/statement-summary",
        key,
        start=T0,
        end=T0 + hours * HOUR,
        page_s=HOUR,
    )
    assert r.status_code == 200, r.text
    summary = r.json()
    pages = {}
    for entry in summary["summary"]["pages"]:
        r = get(client, f"/api/v1/statements/pages/{entry['cid']}", key)
        assert r.status_code == 200, r.text
        pages[entry["cid"]] = r.json()
    return summary, pages


def _verify(client: TestClient, summary: dict[str, Any], pages: dict[str, Any]) -> Any:
    return verify_summary(summary, pages, reader_of(client), trust_of(client))


def _resign_summary(client: TestClient, summary: dict[str, Any]) -> dict[str, Any]:
    key = ledger_of(client).signing_key
    summary["signature"]["value"] = bytes(p256.sign(key, strict_json.canonical(summary["summary"]))).hex()
    return summary


def _window_of(batch: dict[str, Any]) -> list[int]:
    """A bundle batch's window, from its signed header."""
    _, header = parse_header(bytes.fromhex(batch["signed_header"]))
    return list(header["window"])


def _replace_page(
    summary: dict[str, Any], pages: dict[str, Any], index: int, page: dict[str, Any], fold: bool = True
) -> None:
    """What an insider does after editing page ``index``: store it under its new CID and recompute every
    total of the summary from the pages, so only the checks across pages can catch it."""
    old = summary["summary"]["pages"][index]
    del pages[old["cid"]]
    cid = cid_for(strict_json.canonical(page))
    pages[cid] = page
    summary["summary"]["pages"][index] = page_entry(page, cid)
    body = summary["summary"]
    body["figures"] = total_figures(e["figures"] for e in body["pages"])
    body["factors"] = total_factors(body["figures"])
    market = total_market_based(body["pages"])
    if market is not None:
        body["market_based"] = market
    if not fold:  # another tenant's page lists other gateways and devices: nothing to fold them into
        return
    folded = CompletenessTotals()
    for entry in body["pages"]:
        folded.add(pages[entry["cid"]]["statement"]["completeness"])
    body["completeness"] = folded.to_json()


def test_a_paged_summary_verifies_and_adds_up_to_the_one_statement(paged: Any) -> None:
    client, ours, _ = paged
    summary, pages = _summary(client, ours)
    body = summary["summary"]
    assert [(p["start"], p["end"]) for p in body["pages"]] == [
        (T0 + i * HOUR, T0 + (i + 1) * HOUR) for i in range(HOURS)
    ]
    report = _verify(client, summary, pages)
    assert (report.status, report.exit_code) == ("valid", 0), report.as_json()
    assert [s.step for s in report.steps] == [
        "bundle_format",
        "summary_signature",
        "summary_pages",
        "summary_figures",
        "summary_completeness",
    ]
    r = get(
        client,
        f"/api/v1/enterprises/{ours.tenant.enterprise_id}/statement",
        ours.tenant.enterprise_key,
        start=T0,
        end=T0 + HOURS * HOUR,
    )
    whole = r.json()["statement"]
    assert body["figures"] == whole["figures"] and body["figures"]["aggregates"] == 2 * HOURS * HOUR // WINDOW
    assert body["factors"] == whole["factors"]
    assert body["completeness"]["devices"] == whole["completeness"]["devices"]
    [gateway] = body["completeness"]["gateways"]
    [one] = whole["completeness"]["gateways"]
    assert gateway == {k: one[k] for k in ("gateway_id", "first_seq", "last_seq", "closed")}
    assert gateway["closed"] is True


def test_a_dropped_page_is_incomplete_never_valid(paged: Any) -> None:
    client, ours, _ = paged
    summary, pages = _summary(client, ours)
    del pages[summary["summary"]["pages"][2]["cid"]]
    report = _verify(client, summary, pages)
    assert (report.status, report.exit_code) == ("incomplete", EXIT_INCOMPLETE), report.as_json()
    report = _verify(client, summary, {})
    assert report.status == "incomplete", report.as_json()


def test_another_enterprises_page_in_its_place_fails(paged: Any) -> None:
    client, ours, theirs = paged
    summary, pages = _summary(client, ours)
    _, their_pages = _summary(client, theirs)
    cid = summary["summary"]["pages"][1]["cid"]
    pages[cid] = next(p for p in their_pages.values() if p["statement"]["period"]["start"] == T0 + HOUR)
    report = _verify(client, summary, pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_pages"), report.as_json()
    # the insider lists it properly (its CID, sha256, figures) and re-signs: still not this enterprise's
    summary, pages = _summary(client, ours)
    their = next(p for p in their_pages.values() if p["statement"]["period"]["start"] == T0 + HOUR)
    _replace_page(summary, pages, 1, copy.deepcopy(their), fold=False)
    report = _verify(client, _resign_summary(client, summary), pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_pages"), report.as_json()
    assert "another enterprise" in report.detail


def test_edited_totals_resigned_with_the_real_key_fail_at_the_figures(paged: Any) -> None:
    client, ours, _ = paged
    summary, pages = _summary(client, ours)
    summary["summary"]["figures"]["emissions_g_e4"] -= 10_000
    report = _verify(client, summary, pages)
    assert report.failed_step == "summary_signature", report.as_json()
    report = _verify(client, _resign_summary(client, summary), pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_figures"), report.as_json()
    assert report.exit_code == STEP_EXIT["summary_figures"]


def test_a_gap_between_pages_fails(paged: Any) -> None:
    client, ours, _ = paged
    summary, pages = _summary(client, ours)
    body = summary["summary"]
    dropped = body["pages"].pop(3)
    del pages[dropped["cid"]]
    body["figures"] = total_figures(e["figures"] for e in body["pages"])
    body["factors"] = total_factors(body["figures"])
    report = _verify(client, _resign_summary(client, summary), pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_pages"), report.as_json()
    assert "gap" in report.detail


def test_a_chain_broken_between_pages_fails(paged: Any) -> None:
    client, ours, _ = paged
    summary, pages = _summary(client, ours)
    # page 2 without the batches that reach the hour's end: the one whose window ends there, and the one past
    # it that the page holds because part of its energy was used in the hour (attribution by measurement
    # time). On its own a valid statement whose chain is open; the next page's chain starts at a batch
    # neither the page holds nor follows
    index = 2
    page = copy.deepcopy(pages[summary["summary"]["pages"][index]["cid"]])
    bundle = page["bundle"]
    end = page["statement"]["period"]["end"]
    reaching = {b["batch_id"] for b in bundle["batches"] if _window_of(b)[1] >= end}
    assert len(reaching) == 2, reaching
    bundle["batches"] = [b for b in bundle["batches"] if b["batch_id"] not in reaching]
    bundle["items"] = [i for i in bundle["items"] if i["batch_id"] not in reaching]
    _prune(bundle)
    body = page["statement"]
    listed = body["completeness"]
    body["completeness"] = completeness_of(
        ProofBundle.from_json(bundle),
        body["period"]["start"],
        body["period"]["end"],
        [g["gateway_id"] for g in listed["gateways"]],
        [d["device_id"] for d in listed["devices"]],
    )
    assert body["completeness"]["gateways"][0]["closed"] is False
    _resign(page, ledger_of(client).signing_key)
    alone = verify_statement(page, reader_of(client), trust_of(client))
    assert alone.status == "valid", alone.as_json()
    _replace_page(summary, pages, index, page)
    report = _verify(client, _resign_summary(client, summary), pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_completeness"), report.as_json()
    assert "a batch is missing between pages" in report.detail


def test_a_page_is_served_only_to_who_may_see_its_statement(paged: Any) -> None:
    client, ours, theirs = paged
    summary, _ = _summary(client, ours)
    cid = summary["summary"]["pages"][0]["cid"]
    assert get(client, f"/api/v1/statements/pages/{cid}", theirs.tenant.enterprise_key).status_code == 403
    with ledger_of(client).read_session_factory() as session:  # the sealed batch blob the store really holds
        row = session.get(models.Batch, ours.batches[0].id)
        assert row is not None and ledger_of(client).store.get(row.cid)
        batch_cid = row.cid  # the content store holds batches too: never served here
    for missing in (batch_cid, "bafkreiaaaa"):
        r = get(client, f"/api/v1/statements/pages/{missing}", ours.tenant.enterprise_key)
        assert r.status_code == 403, r.text
    served = get(client, f"/api/v1/statements/pages/{cid}", ours.tenant.enterprise_key).content
    assert hashlib.sha256(served).hexdigest() == summary["summary"]["pages"][0]["sha256"]  # the stored bytes
    assert cid_for(served) == cid


def test_the_command_line_verifies_a_summary_with_its_pages(
    served_app: tuple[TestClient, str],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    client, base = served_app
    trust_path = tmp_path / "trust.json"
    trust_path.write_text(json.dumps(client.get("/api/v1/trust").json()))
    ours = _fill(client, "Summary CLI", hours=2)
    anchor(client)
    summary, pages = _summary(client, ours, hours=2)
    pages_dir = tmp_path / "pages"
    pages_dir.mkdir()
    for cid, page in pages.items():
        (pages_dir / f"{cid}.json").write_bytes(strict_json.canonical(page))

    def verify(document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path = tmp_path / "summary.json"
        path.write_text(json.dumps(document))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "carbontrace.verify_bundle",
                str(path),
                "--pages",
                str(pages_dir),
                "--rpc",
                f"{base}/rpc",
                "--trust",
                str(trust_path),
                "--json",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, json.loads(done.stdout)

    code, report = verify(summary)
    assert (code, report["status"]) == (0, "valid"), report
    forged = copy.deepcopy(summary)
    forged["summary"]["figures"]["energy_wh"] += 1
    code, report = verify(_resign_summary(client, forged))
    assert (code, report["failed_step"]) == (STEP_EXIT["summary_figures"], "summary_figures"), report
    (pages_dir / f"{summary['summary']['pages'][1]['cid']}.json").unlink()
    code, report = verify(summary)
    assert (code, report["status"]) == (EXIT_INCOMPLETE, "incomplete"), report


def test_the_market_based_total_is_the_sum_of_the_pages_and_edits_fail(paged: Any) -> None:
    """Beside the location-based totals, the summary's market-based total (every page's market_based section,
    carbontrace_protocol/market_based.py): the sum of its pages', each as its page states it."""
    client, ours, _ = paged
    summary, pages = _summary(client, ours)
    body = summary["summary"]
    stated = [pages[e["cid"]]["statement"]["market_based"]["emissions"] for e in body["pages"]]
    assert [e["market_based"] for e in body["pages"]] == stated
    grams = sum(s["g_e4"] for s in stated)
    assert grams > 0 and body["market_based"]["emissions"] == {
        "t_co2": f"{grams // 10**10}.{grams % 10**10:010d}", "unit": "tCO2", "gas": "CO2", "method": "market-based",
        "g_e4": grams}
    assert _verify(client, summary, pages).status == "valid"
    edited = copy.deepcopy(summary)
    edited["summary"]["market_based"]["emissions"]["g_e4"] -= 1
    report = _verify(client, _resign_summary(client, edited), pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_figures"), report.as_json()
    assert "market-based total" in report.detail
    # a page's line lowered and the total with it: the page itself says otherwise
    edited = copy.deepcopy(summary)
    edited["summary"]["pages"][0]["market_based"]["g_e4"] -= 1
    edited["summary"]["market_based"] = total_market_based(edited["summary"]["pages"])
    report = _verify(client, _resign_summary(client, edited), pages)
    assert (report.status, report.failed_step) == ("invalid", "summary_pages"), report.as_json()
    assert "market-based emissions" in report.detail
