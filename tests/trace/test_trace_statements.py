"""Enterprise period statements: what an auditor reads from one is what the chain and the leaves prove.

Forgeries are made the strong way: by an insider who holds the cloud's signing key, so each re-signed
statement has a valid signature, and only the figures, the period, the batch chain and the chain's lists of
the enterprise's gateways and devices can give it away.
"""

from __future__ import annotations

import copy
import hashlib
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import market_based, p256, strict_json
from carbontrace_protocol.ids import key_fingerprint
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.statement import factor_entries, figures_of, verify_statement
from cloud.signing_key import public_key
from tests.trace.trace_kit import Traced, anchor, get, ledger_of, reader_of, tenant_with_batches, trust_of


def _prune(bundle: dict[str, Any]) -> None:
    """Drop keys and checkpoints nothing in the bundle uses any more (the format refuses unused ones)."""
    seqs = {b["checkpoint_seq"] for b in bundle["batches"] if b["checkpoint_seq"] is not None}
    bundle["checkpoints"] = [c for c in bundle["checkpoints"] if c["seq"] in seqs]
    used = {b["gateway_key"] for b in bundle["batches"]} | {i["device_key"] for i in bundle["items"] if i["device_key"]}
    bundle["keys"] = [
        k
        for k in bundle["keys"]
        if k["kind"] == "cloud" or key_fingerprint(bytes.fromhex(k["public_key"])).hex() in used
    ]


def _resign(document: dict[str, Any], private_key: int, recompute: bool = True) -> dict[str, Any]:
    """What an insider with the cloud key does after editing: figures recomputed, bundle hash and signature
    made anew, so the statement is self-consistent."""
    body = document["statement"]
    if recompute:
        bundle = ProofBundle.from_json(document["bundle"])
        figures, factors, _ = figures_of(bundle)
        body["figures"], body["factors"] = figures, factor_entries(factors)
        if "market_based" in body:  # the market-based section too, from the same edited bundle
            period, inputs = body["period"], market_based.section_inputs(body["market_based"])
            try:
                body["market_based"] = market_based.section(bundle, period["start"], period["end"],
                                                            body["issued_at"], *inputs)
            except market_based.MarketBasedError:
                pass  # a site of another tenant added: no location to give it, the section stays as it was
    body["bundle_sha256"] = hashlib.sha256(strict_json.canonical(document["bundle"])).hexdigest()
    document["signature"]["kid"] = key_fingerprint(bytes(p256.public_key(private_key))).hex()
    document["signature"]["value"] = bytes(p256.sign(private_key, strict_json.canonical(body))).hex()
    return document


def _statement(client: TestClient, traced: Traced, start: int, end: int) -> dict[str, Any]:
    r = get(
        client,
        f"/api/v1/enterprises/{traced.tenant.enterprise_id}/statement",
        traced.tenant.enterprise_key,
        start=start,
        end=end,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _period(traced: Traced) -> tuple[int, int]:
    return traced.batches[0].header["window"][0], traced.batches[-1].header["window"][1] + 600


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.cloud.cloud_testkit import app_client, make_settings

    with app_client(make_settings(tmp_path_factory.mktemp("statements"))) as client:
        ours = tenant_with_batches(client, "Statement Ours", batches=4)
        theirs = tenant_with_batches(client, "Statement Theirs", batches=2)
        anchor(client)
        yield client, ours, theirs


def test_a_statement_proves_its_figures_and_its_completeness(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    document = _statement(client, ours, *_period(ours))
    body = document["statement"]
    aggregates = [a for b in ours.batches for a in _aggregates(b)]
    # the leaves' energy is the measured part; the period's last 600 s have no data, so they are substituted
    attributed = body["figures"]["attribution"]
    assert attributed["energy_wh"]["measured"] == sum(a["energy"]["delta_wh"] for a in aggregates) > 0
    assert attributed["energy_wh"]["substituted"] > 0 and attributed["gap_s"] > 0
    assert body["figures"]["energy_wh"] == attributed["energy_wh"]["measured"] + attributed["energy_wh"]["substituted"]
    grams_e4 = sum(a["emissions_g"].value[1] for a in aggregates)
    assert attributed["emissions"]["measured"]["g_e4"] == grams_e4 > 0
    total_e4 = body["figures"]["emissions_g_e4"]
    assert total_e4 == grams_e4 + attributed["emissions"]["substituted"]["g_e4"]
    assert Decimal(body["figures"]["emissions_t_co2"]) == Decimal(total_e4) / 10**10  # tonnes, exact
    # an auditor's unit: tCO2 (CO2-only grid factors, no GWP), with the Scope 2 method
    assert attributed["emissions"]["total"]["unit"] == "tCO2" and attributed["emissions"]["total"]["gas"] == "CO2"
    assert attributed["emissions"]["total"]["method"] == "location-based"
    assert Decimal(attributed["emissions"]["total"]["t_co2"]) == Decimal(total_e4) / 10**10
    # each factor names its region, reporting year and official source (publisher, title, date)
    assert all(
        f["region"]["code"] and f["region"]["name"] and f["reporting_year"] and f["source"]["publisher"]
        and f["source"]["title"] and f["kind"] == "location_grid_average"
        for f in body["factors"]
    ), body["factors"]
    gateways = body["completeness"]["gateways"]
    assert [(g["gateway_id"], g["batches"], g["first_seq"], g["last_seq"]) for g in gateways] == [
        (ours.tenant.gateway.gateway_id, 4, 0, 3)
    ]
    devices = body["completeness"]["devices"]
    assert {d["device_id"] for d in devices} == {d.device_id for d in ours.tenant.gateway.devices}
    assert all(d["received"] == 8 and d["expected"] > d["received"] for d in devices), devices
    report = verify_statement(document, reader_of(client), trust_of(client))
    assert (report.status, report.exit_code) == ("valid", 0), report.as_json()
    names = [s.step for s in report.steps]
    assert names[:5] == [
        "bundle_format",
        "statement_signature",
        "query_match",
        "statement_figures",
        "statement_completeness",
    ], names


def test_an_edited_figure_fails_the_signature(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    document = _statement(client, ours, *_period(ours))
    document["statement"]["figures"]["energy_wh"] += 1
    assert verify_statement(document, reader_of(client), trust_of(client)).failed_step == "statement_signature"


def test_a_statement_resigned_with_a_self_made_key_fails(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    rogue = p256.private_key_from_bytes(bytes(range(1, 33)))
    forged = _statement(client, ours, *_period(ours))
    forged["statement"]["figures"]["energy_wh"] += 1
    forged["bundle"]["keys"].append(
        {"kind": "cloud", "signer": "carbontrace-cloud", "public_key": bytes(p256.public_key(rogue)).hex()}
    )
    report = verify_statement(_resign(forged, rogue, recompute=False), reader_of(client), trust_of(client))
    assert report.failed_step == "statement_signature" and "not registered" in report.detail, report.as_json()


def test_a_dropped_batch_breaks_the_gateway_chain(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    document = _statement(client, ours, *_period(ours))
    dropped = ours.batches[1].id
    bundle = document["bundle"]
    bundle["batches"] = [b for b in bundle["batches"] if b["batch_id"] != dropped]
    bundle["items"] = [i for i in bundle["items"] if i["batch_id"] != dropped]
    _prune(bundle)
    report = verify_statement(_resign(document, ledger_of(client).signing_key), reader_of(client), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", "statement_completeness"), report.as_json()
    assert "a batch is missing" in report.detail


def test_a_dropped_first_batch_leaves_the_chain_open_at_the_start(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    document = _statement(client, ours, *_period(ours))
    dropped = ours.batches[0].id
    bundle = document["bundle"]
    bundle["batches"] = [b for b in bundle["batches"] if b["batch_id"] != dropped]
    bundle["items"] = [i for i in bundle["items"] if i["batch_id"] != dropped]
    _prune(bundle)
    report = verify_statement(_resign(document, ledger_of(client).signing_key), reader_of(client), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", "statement_completeness"), report.as_json()


def test_a_gateway_or_device_left_out_is_caught_against_the_chain(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    for section in ("gateways", "devices"):
        document = _statement(client, ours, *_period(ours))
        document["statement"]["completeness"][section] = document["statement"]["completeness"][section][1:]
        report = verify_statement(
            _resign(document, ledger_of(client).signing_key, recompute=False), reader_of(client), trust_of(client)
        )
        assert (report.status, report.failed_step) == ("invalid", "statement_completeness"), (section, report.as_json())


def test_another_tenants_leaves_in_a_statement_fail(two_tenants: Any) -> None:
    client, ours, theirs = two_tenants
    document = _statement(client, ours, *_period(ours))
    other = _statement(client, theirs, *_period(theirs))["bundle"]
    aggregate = next(i for i in other["items"] if i["kind"] == "aggregate")
    batch = next(b for b in other["batches"] if b["batch_id"] == aggregate["batch_id"])
    bundle = document["bundle"]
    bundle["items"].append(aggregate)
    bundle["batches"].append(batch)
    bundle["keys"] += [k for k in other["keys"] if k["kind"] == "gateway"]
    report = verify_statement(_resign(document, ledger_of(client).signing_key), reader_of(client), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", "query_match"), report.as_json()


def test_a_shifted_period_fails(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    start, end = _period(ours)
    document = _statement(client, ours, start, end)
    document["statement"]["period"]["start"] = start + 60  # the body says one period, the bundle another
    report = verify_statement(
        _resign(document, ledger_of(client).signing_key, recompute=False), reader_of(client), trust_of(client)
    )
    assert report.failed_step == "query_match", report.as_json()
    document = _statement(client, ours, start, end)
    document["statement"]["period"]["start"] = start + 60  # both shifted: the first windows now start too early
    document["bundle"]["query"]["start"] = start + 60
    report = verify_statement(_resign(document, ledger_of(client).signing_key), reader_of(client), trust_of(client))
    assert report.failed_step == "statement_figures", report.as_json()


def test_the_statement_key_is_named_by_fingerprint(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    document = _statement(client, ours, *_period(ours))
    assert document["signature"]["kid"] == key_fingerprint(public_key(ledger_of(client).signing_key)).hex()
    assert set(document["signature"]) == {"alg", "kid", "value"}
    bad = copy.deepcopy(document)
    bad["signature"]["public_key"] = "00"
    assert verify_statement(bad, reader_of(client), trust_of(client)).failed_step == "bundle_format"


def _aggregates(batch):  # type: ignore[no-untyped-def]
    return [aggregate for _, aggregate in batch.aggregates()]


def test_a_statement_that_hides_substitution_or_moves_energy_does_not_verify(two_tenants: Any) -> None:
    client, ours, _ = two_tenants
    key = ledger_of(client).signing_key
    start, end = _period(ours)
    document = _statement(client, ours, start, end)
    attributed = document["statement"]["figures"]["attribution"]
    assert attributed["energy_wh"]["substituted"] > 0  # the period's last 600 s have no data
    # an insider with the cloud key reports the substituted energy as measured, the totals unchanged
    hidden = copy.deepcopy(document)
    forged = hidden["statement"]["figures"]["attribution"]
    forged["energy_wh"]["measured"] += forged["energy_wh"]["substituted"]
    forged["energy_wh"]["substituted"] = 0
    forged["shares"] = {"measured": "1.0000", "interpolated": forged["shares"]["interpolated"],
                        "substituted": "0.0000"}
    hidden = _resign(hidden, key, recompute=False)
    report = verify_statement(hidden, reader_of(client), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", "statement_figures"), report.as_json()
    # a period that ends inside the data: its energy is split at the boundary; claiming the whole of the
    # energy of the aggregates in its bundle (the arrival-time rule) is moving energy across the boundary
    mid = ours.batches[1].header["window"][0] + 30
    half = _statement(client, ours, start, mid)
    leaves = ProofBundle.from_json(half["bundle"])
    whole, _, _ = figures_of(leaves, half["statement"]["issued_at"])
    moved = copy.deepcopy(half)
    figures = moved["statement"]["figures"]
    extra = 7  # one reading's energy of the next period claimed here
    figures["energy_wh"] += extra
    figures["attribution"]["energy_wh"]["total"] += extra
    figures["attribution"]["energy_wh"]["measured"] += extra
    moved = _resign(moved, key, recompute=False)
    assert whole == half["statement"]["figures"]  # the honest statement is what the verifier recomputes
    report = verify_statement(moved, reader_of(client), trust_of(client))
    assert (report.status, report.failed_step) == ("invalid", "statement_figures"), report.as_json()
    assert verify_statement(half, reader_of(client), trust_of(client)).status == "valid"
