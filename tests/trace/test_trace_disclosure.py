"""Issue 16, done-when: the public cannot obtain a CO2 value, yet verifies what it is shown; the enterprise opens it.

Real cloud (SQLite and PostgreSQL), real uploads through the HTTP API, the verifier the CLI uses, the chain
read over JSON-RPC. The cloud holds every opening (in the sealed blob); what leaves it is decided per query.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from carbontrace_protocol import cbor
from carbontrace_protocol.proof_verify import verify_bundle_json
from cloud import models
from tests.cloud.cloud_testkit import decide_binding, register_platform, register_tenant, request_binding, upload
from tests.trace.trace_kit import anchor, get, ledger_of, reader_of, trust_of

CO2 = 7391  # distinctive


def _tenant(client: TestClient, name: str):  # type: ignore[no-untyped-def]
    tenant = register_tenant(client, name, devices=1)
    gw = tenant.gateway
    batch, readings = gw.build(per_device=3, co2=CO2)
    assert upload(client, gw, batch).status_code == 201
    gw.accepted(batch, readings)
    anchor(client)
    return tenant, batch


def test_the_public_verifies_emissions_and_gets_no_co2_opening(client: TestClient) -> None:
    tenant, batch = _tenant(client, "Disclosure-A")
    ((index, aggregate),) = batch.aggregates()
    co2_opening = batch.openings[index]["co2"]
    assert aggregate["co2"]["min"] == CO2
    public = get(client, "/api/v1/trace/bundle", types="emissions", enterprise_id=tenant.enterprise_id)
    assert public.status_code == 200, public.text
    text = public.text
    # the leaf is the same for everyone (the proof covers it) but it names CO2 only by its salted commitment
    assert batch.leaves[index].hex() in text
    assert co2_opening.hex() not in text and co2_opening[2:18].hex() not in text  # neither the opening nor its salt
    assert cbor.encode(aggregate["co2"]).hex() not in text
    report = verify_bundle_json(public.json(), reader_of(client), trust_of(client))
    assert report.status == "valid", report.as_json()
    # asking for more is refused, not answered with less
    assert get(client, "/api/v1/trace/bundle", types=["aggregates", "co2"]).status_code == 403


def test_a_trading_platform_verifies_a_bound_enterprises_emissions_offline_and_gets_no_co2(client: TestClient) -> None:
    """The platform's bundle (emissions of an enterprise bound to it on chain) verifies with only the chain reader
    and the trust file, and opens none of co2, temp_mean, rh_mean; asking for them is refused."""
    tenant, batch = _tenant(client, "Disclosure-P")
    platform_id, platform_key, platform_chain_key = register_platform(client, "Disclosure Exchange")
    r = request_binding(client, tenant.enterprise_id, tenant.enterprise_key, tenant.chain_key, platform_id)
    assert r.status_code == 201, r.text
    r = decide_binding(client, platform_id, platform_key, platform_chain_key, tenant.enterprise_id)
    assert r.json()["state"] == "bound", r.text
    ((index, aggregate),) = batch.aggregates()
    bundle = get(client, "/api/v1/trace/bundle", key=platform_key, types="emissions",
                 enterprise_id=tenant.enterprise_id)
    assert bundle.status_code == 200, bundle.text
    (item,) = [i for i in bundle.json()["items"] if i["kind"] == "aggregate"]
    assert "emissions_g" in item["view"] and "energy" in item["view"]
    assert not {"co2", "temp_mean", "rh_mean"} & (set(item["openings"]) | set(item["view"]))
    for name in ("co2", "temp_mean", "rh_mean"):
        opening = batch.openings[index][name]
        assert opening.hex() not in bundle.text and opening[2:18].hex() not in bundle.text, name
        assert cbor.encode(aggregate[name]).hex() not in bundle.text, name
    # offline: the bundle alone, checked against the chain and the pinned trust file, no call to the cloud
    report = verify_bundle_json(bundle.json(), reader_of(client), trust_of(client))
    assert report.status == "valid", report.as_json()
    for types in (["emissions", "co2"], ["aggregates"], ["temperature"]):
        r = get(client, "/api/v1/trace/bundle", key=platform_key, types=types, enterprise_id=tenant.enterprise_id)
        assert r.status_code == 403, (types, r.text)


def test_the_enterprise_opens_co2_and_it_verifies(client: TestClient) -> None:
    tenant, batch = _tenant(client, "Disclosure-B")
    ((index, _),) = batch.aggregates()
    own = get(client, "/api/v1/trace/bundle", key=tenant.enterprise_key, types=["aggregates", "co2"])
    assert own.status_code == 200, own.text
    (item,) = [i for i in own.json()["items"] if i["kind"] == "aggregate"]
    assert bytes.fromhex(item["openings"]["co2"]) == batch.openings[index]["co2"]
    assert item["view"]["co2"]["min"] == CO2 and "temp_mean" not in item["view"]
    assert verify_bundle_json(own.json(), reader_of(client), trust_of(client)).status == "valid"


def test_the_sql_index_holds_the_committed_leaf_not_the_aggregate_in_clear(client: TestClient) -> None:
    _, batch = _tenant(client, "Disclosure-C")
    ((index, aggregate),) = batch.aggregates()
    with ledger_of(client).session_factory() as session:
        row = session.get(models.Aggregate, (batch.id, aggregate["device"]))
        assert row is not None and row.leaf == batch.leaves[index]
        assert cbor.encode(aggregate["co2"]) not in row.leaf
