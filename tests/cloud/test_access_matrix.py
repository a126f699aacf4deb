"""Every cell of the access tables (cloud/access_scope.py, docs/access.md) checked against the real HTTP API.

The expected scopes are written out here, not read from the module: changing one cell of the module's
tables makes exactly the cases of that cell fail. One cloud (SQLite, embedded chain) serves every case:
enterprise Own (the enterprise, site-engineer and gateway keys' own, bound on chain to the platform) and
enterprise Other (which only requested a binding to the platform), both with an anchored batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol.views import DataType
from cloud import access_scope, models
from tests.cloud.cloud_testkit import (
    ADMIN_KEY,
    Tenant,
    app_client,
    auth,
    decide_binding,
    make_settings,
    register_platform,
    request_binding,
)
from tests.trace.trace_kit import Traced, anchor, ledger_of, tenant_with_batches, upload_flux_batch

CALLERS = ("public", "operator", "regulator", "enterprise", "platform", "site_engineer", "gateway")
TARGETS = ("own", "other")  # "own": the caller's own enterprise, or the one bound to the platform
TYPES = [t.value for t in DataType]

# caller → data type → tenant scope, as docs/access.md states it
DATA: dict[str, dict[str, str]] = {
    "public": {"co2": "none", "temperature": "none", "humidity": "none", "energy": "none",
               "emissions": "any", "aggregates": "any", "flux": "none"},
    "operator": dict.fromkeys(TYPES, "none"),
    "regulator": dict.fromkeys(TYPES, "any"),
    "enterprise": dict.fromkeys(TYPES, "own"),
    "platform": {**dict.fromkeys(TYPES, "none"), "emissions": "bound"},
    "site_engineer": dict.fromkeys(TYPES, "none"),
    "gateway": dict.fromkeys(TYPES, "none"),
}
# surface → scopes in CALLERS order
SURFACES: dict[str, tuple[str, ...]] = {
    "statement": ("any", "none", "any", "own", "bound", "none", "none"),
    "console_enterprises": ("none", "any", "any", "own", "asked", "own", "none"),
    "console_sites": ("none", "any", "any", "own", "none", "own", "none"),
    "console_emissions": ("none", "any", "any", "own", "bound", "own", "none"),
    "console_batches": ("none", "any", "any", "own", "none", "own", "none"),
    "batch_record": ("none", "any", "any", "own", "none", "own", "own"),
    "batch_cid": ("none", "any", "any", "own", "none", "own", "own"),
    "batch_blob": ("none", "any", "any", "own", "none", "none", "none"),
    "restate": ("none", "none", "any", "own", "none", "none", "none"),
    "site_record": ("none", "any", "any", "own", "none", "own", "none"),
    "instrument_record": ("none", "any", "any", "own", "none", "own", "none"),
    "instrument_register": ("none", "none", "none", "own", "none", "none", "none"),
}
# field → scopes in CALLERS order: which values a proof bundle opens to whom (an aggregate field not opened
# stays a salted commitment in the leaf)
_PUBLIC_FIELD = ("any", "none", "any", "own", "bound", "none", "none")
_PRIVATE_FIELD = ("none", "none", "any", "own", "none", "none", "none")
FIELDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("co2_ppm", "temperature_centi_c", "humidity_centi_pct", "energy_wh", "power_deci_w"),
                    _PRIVATE_FIELD),
    **dict.fromkeys(("interval_s", "expected", "received", "seq", "missing", "energy", "factor", "emissions_g"),
                    _PUBLIC_FIELD),
    **dict.fromkeys(("co2", "temp_mean", "rh_mean"), _PRIVATE_FIELD),
}
READING_FIELDS = ("co2_ppm", "temperature_centi_c", "humidity_centi_pct", "energy_wh", "power_deci_w")
TRACE = ("/api/v1/trace/locate", "/api/v1/trace/retrieve", "/api/v1/trace/verify", "/api/v1/trace/bundle")


@dataclass
class World:
    client: TestClient
    own: Traced
    other: Traced
    keys: dict[str, str | None]

    def tenant(self, target: str) -> Tenant:
        return (self.own if target == "own" else self.other).tenant

    def batch_cid(self, target: str) -> str:
        with ledger_of(self.client).read_session_factory() as session:
            row = session.get(models.Batch, f"{self.tenant(target).gateway.gateway_id}/0")
            assert row is not None
            return row.cid

    def get(self, caller: str, path: str, **params: Any) -> Any:
        key = self.keys[caller]
        return self.client.get(path, params=params, headers=auth(key) if key else {})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with app_client(make_settings(Path(tmp_path_factory.mktemp("access")))) as client:
        own = tenant_with_batches(client, "Own Co", batches=1)
        other = tenant_with_batches(client, "Other Co", batches=1)
        for traced in (own, other):  # a chamber flux each, traced by its own type
            upload_flux_batch(client, traced)
        anchor(client)
        platform_id, platform_key, platform_chain_key = register_platform(client, "Exchange")
        for traced in (own, other):
            t = traced.tenant
            assert request_binding(client, t.enterprise_id, t.enterprise_key, t.chain_key, platform_id).status_code == 201
        r = decide_binding(client, platform_id, platform_key, platform_chain_key, own.tenant.enterprise_id)
        assert r.json()["state"] == "bound", r.text
        regulator = client.post("/api/v1/regulators", json={"label": "reg"}, headers=auth(ADMIN_KEY)).json()
        keys: dict[str, str | None] = {
            "public": None,
            "operator": ADMIN_KEY,
            "regulator": regulator["api_key"],
            "enterprise": own.tenant.enterprise_key,
            "platform": platform_key,
            "site_engineer": own.tenant.engineer_key,
            "gateway": own.tenant.gateway.api_key,
        }
        yield World(client, own, other, keys)


def allowed(scope: str, target: str) -> bool:
    """Whether a caller with ``scope`` gets the target enterprise's data (Other only asked for a binding)."""
    return scope == "any" or (scope in ("own", "bound", "asked") and target == "own") or (
        scope == "asked" and target == "other"
    )


def denied_status(caller: str, needs_key: bool) -> int:
    return 401 if caller == "public" and needs_key else 403


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("data_type", TYPES)
@pytest.mark.parametrize("caller", CALLERS)
def test_trace_cell(world: World, caller: str, data_type: str, target: str) -> None:
    tenant = world.tenant(target)
    r = world.get(caller, TRACE[0], enterprise_id=tenant.enterprise_id, types=data_type)
    if not allowed(DATA[caller][data_type], target):
        assert (r.status_code, r.json()) == (403, {"detail": "forbidden"}), r.text
        return
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items and {i["site_id"] for i in items} == {tenant.gateway.site_id}
    expected = "flux" if data_type == "flux" else "reading" if data_type in (
        "co2", "temperature", "humidity", "energy") else "aggregate"
    assert {i["kind"] for i in items} == {expected}


def _surface_answer(world: World, caller: str, surface: str, target: str) -> tuple[int, str]:
    """(status, body) of the surface for the target enterprise; 404 stands for 'answered, target absent'."""
    tenant = world.tenant(target)
    ent, batch = tenant.enterprise_id, f"/api/v1/batches/{tenant.gateway.gateway_id}/0"
    if surface == "statement":
        r = world.get(caller, f"/api/v1/enterprises/{ent}/statement", start=0, end=2_000_000_000)
    elif surface in ("console_sites", "console_emissions"):
        r = world.get(caller, f"/api/v1/console/{surface.removeprefix('console_')}", enterprise_id=ent)
    elif surface in ("console_enterprises", "console_batches"):
        r = world.get(caller, f"/api/v1/console/{surface.removeprefix('console_')}")
        needle = ent if surface == "console_enterprises" else tenant.gateway.gateway_id
        if r.status_code == 200 and needle not in r.text:
            return 404, r.text
    elif surface == "batch_record":
        r = world.get(caller, batch)
    elif surface == "batch_blob":
        r = world.get(caller, batch + "/blob")
    elif surface == "restate":
        # an empty request: a caller in scope reaches the handler's own check of the body (422, nothing is
        # restated or stored), one out of scope is refused before it
        key = world.keys[caller]
        r = world.client.post(f"/api/v1/enterprises/{ent}/restatements", json={}, headers=auth(key) if key else {})
        if r.status_code == 422 and "give exactly one of" in r.text:
            return 200, r.text
    elif surface == "site_record":
        # the site list, the gateway record and a device record answer alike, or the cell is not one rule
        gw = tenant.gateway
        answers = [world.get(caller, p) for p in (f"/api/v1/enterprises/{ent}/sites", f"/api/v1/gateways/{gw.gateway_id}",
                                                  f"/api/v1/devices/{gw.devices[0].device_id}")]
        assert len({a.status_code for a in answers}) == 1, [(a.status_code, a.text[:100]) for a in answers]
        r = answers[0]
    elif surface == "instrument_record":
        r = world.get(caller, f"/api/v1/sites/{tenant.gateway.site_id}/instruments")
    elif surface == "instrument_register":
        # an empty record: a caller in scope reaches the strict parse (422 naming the missing fields, nothing
        # registered), one out of scope is refused before it
        key = world.keys[caller]
        r = world.client.post(f"/api/v1/sites/{tenant.gateway.site_id}/instruments", json={},
                              headers=auth(key) if key else {})
        if r.status_code == 422 and "instrument: missing fields" in r.text:
            return 200, r.text
    else:
        raise AssertionError(surface)
    return r.status_code, r.text


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("surface", [s for s in SURFACES if s != "batch_cid"])
@pytest.mark.parametrize("caller", CALLERS)
def test_surface_cell(world: World, caller: str, surface: str, target: str) -> None:
    scope = SURFACES[surface][CALLERS.index(caller)]
    status, text = _surface_answer(world, caller, surface, target)
    if allowed(scope, target):
        assert status == 200, text[:300]
        return
    # a list answers 200 without the target (when the caller may use it at all), anything else refuses
    listed = surface in ("console_enterprises", "console_batches") and scope != "none"
    assert status == (404 if listed else denied_status(caller, surface not in ("statement", "restate"))), text[:300]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("caller", CALLERS)
def test_period_batch_list_cell(world: World, caller: str, target: str) -> None:
    """The audit's batch list (GET /enterprises/{id}/batches) names batch CIDs: it is scoped as batch blobs."""
    scope = SURFACES["batch_blob"][CALLERS.index(caller)]
    path = f"/api/v1/enterprises/{world.tenant(target).enterprise_id}/batches"
    r = world.get(caller, path, start=0, end=2_000_000_000)
    if allowed(scope, target):
        uploaded = (world.own if target == "own" else world.other).batches  # a reading batch and a flux batch
        assert r.status_code == 200 and len(r.json()["batches"]) == len(uploaded) == 2, r.text[:300]
        return
    assert r.status_code == denied_status(caller, True), r.text[:300]


READING_TYPES = ("co2", "temperature", "humidity", "energy")
# a reading's value fields, by the data type that carries them (carbontrace_protocol.views)
READING_TYPE_FIELDS = {"co2": ("co2_ppm",), "temperature": ("temperature_centi_c",),
                       "humidity": ("humidity_centi_pct",), "energy": ("energy_wh", "power_deci_w")}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("caller", CALLERS)
def test_device_readings_cell(world: World, caller: str, target: str) -> None:
    """GET /devices/{id}/readings returns raw readings, so it follows DATA_SCOPE's reading columns (the old
    route let the operator and site engineers read raw CO2 whatever the table said)."""
    traced = world.own if target == "own" else world.other
    device = traced.readings[0].device_id
    r = world.get(caller, f"/api/v1/devices/{device}/readings")
    scopes = {DATA[caller][t] for t in READING_TYPES}
    if not any(allowed(s, target) for s in scopes):
        assert r.status_code == denied_status(caller, True), r.text[:300]
        if r.status_code == 403:
            assert r.json() == {"detail": "forbidden"}
        return
    assert r.status_code == 200, r.text[:300]
    assert [x["seq"] for x in r.json()] == sorted(x.seq for x in traced.readings if x.device_id == device)
    for t in READING_TYPES:  # each field only to whom its type is open; the kit's readings carry every type
        for name in READING_TYPE_FIELDS[t]:
            values = {x[name] for x in r.json()}
            assert (None not in values) == allowed(DATA[caller][t], target), (t, name, values)


def test_device_readings_of_a_missing_device(world: World) -> None:
    """No probing: a caller scoped to its own enterprise gets the same 403 for a missing device as for another's."""
    assert world.get("regulator", "/api/v1/devices/no-such-device/readings").status_code == 404
    r = world.get("enterprise", "/api/v1/devices/no-such-device/readings")
    assert (r.status_code, r.json()) == (403, {"detail": "forbidden"})


def _opened_fields(world: World, caller: str, target: str) -> set[str]:
    """Every field whose value a proof bundle for the caller's widest query opens (readings: shown in the
    signed leaf's view; aggregates: opened, and the view shows exactly those)."""
    r = world.get(caller, TRACE[3], enterprise_id=world.tenant(target).enterprise_id)
    if r.status_code != 200:
        return set()
    opened: set[str] = set()
    for item in r.json()["items"]:
        if item["kind"] == "reading":
            opened |= set(item["view"]) & set(READING_FIELDS)
        elif item["kind"] == "flux":  # the flux record's own fields (trace cells: type flux), none of these
            assert item["view"]["type"] == "chamber_flux" and not item["openings"], item
        else:
            assert set(item["view"]) == {"v", "device", "window", *item["openings"]}, item
            opened |= set(item["openings"])
    return opened


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("field_name", list(FIELDS))
@pytest.mark.parametrize("caller", CALLERS)
def test_field_cell(world: World, caller: str, field_name: str, target: str) -> None:
    shown = field_name in _opened_fields(world, caller, target)
    assert shown == allowed(FIELDS[field_name][CALLERS.index(caller)], target)


def _everything_seen(world: World, caller: str, target: str) -> str:
    """Every answer the caller gets about the target's batch, concatenated."""
    tenant = world.tenant(target)
    texts = [world.get(caller, path, enterprise_id=tenant.enterprise_id).text for path in TRACE]
    texts.append(world.get(caller, TRACE[1], enterprise_id=tenant.enterprise_id, types="co2").text)
    texts.append(world.get(caller, "/api/v1/console/batches").text)
    texts.append(world.get(caller, f"/api/v1/batches/{tenant.gateway.gateway_id}/0").text)
    return "\n".join(texts)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("caller", CALLERS)
def test_batch_cid_cell(world: World, caller: str, target: str) -> None:
    seen = _everything_seen(world, caller, target)
    shown = world.batch_cid(target) in seen
    assert shown == allowed(SURFACES["batch_cid"][CALLERS.index(caller)], target)


def test_anonymous_callers_get_no_batch_cid(world: World) -> None:
    """The public traces aggregates of anyone, but no answer names the batch blob's CID (the old locate did)."""
    cid = world.batch_cid("own")
    r = world.get("public", TRACE[0], enterprise_id=world.own.tenant.enterprise_id)
    assert r.status_code == 200 and r.json()["items"], r.text
    assert all(item["cid"] is None for item in r.json()["items"])
    for path in TRACE:
        r = world.get("public", path, enterprise_id=world.own.tenant.enterprise_id)
        assert r.status_code == 200 and cid not in r.text, (path, r.text[:300])


# leaf format → given/withheld in CALLERS order (docs/access.md "Withheld leaves"); the trace, bundle and
# statement behaviour of a real format 1 leaf is tests/trace/test_trace_legacy_leaves.py
_W, _G = "withheld", "given"
LEAVES: dict[str, tuple[str, ...]] = {
    "reading": (_W, _W, _G, _G, _W, _W, _W),
    "aggregate format 1 (in clear)": (_W, _W, _G, _G, _W, _W, _W),
    "aggregate format 2 (committed)": (_G, _G, _G, _G, _G, _G, _G),
}


@pytest.mark.parametrize("leaf_format", list(LEAVES))
@pytest.mark.parametrize("caller", CALLERS)
def test_leaf_format_cell(caller: str, leaf_format: str) -> None:
    in_clear = access_scope.LEAF_FORMATS[leaf_format]
    withheld = access_scope.withheld_because(access_scope.caller_closed_fields(caller), in_clear) is not None
    assert ("withheld" if withheld else "given") == LEAVES[leaf_format][CALLERS.index(caller)]


def test_the_module_tables_are_the_ones_tested_here() -> None:
    assert set(access_scope.LEAF_FORMATS) == set(LEAVES)
    assert {c: {t.value: s.value for t, s in row.items()} for c, row in access_scope.DATA_SCOPE.items()} == DATA
    assert {s.value: tuple(row[c].value for c in CALLERS) for s, row in access_scope.SURFACE_SCOPE.items()} == SURFACES
    assert access_scope.CALLERS == CALLERS
    fields = (*access_scope.READING_FIELDS, *access_scope.AGGREGATE_FIELDS)
    assert {f: tuple(access_scope.field_scope(c, f).value for c in CALLERS) for f in fields} == FIELDS


def test_docs_access_md_is_generated_from_the_module() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "access.md"
    text = doc.read_text()
    assert text == access_scope.document(text), "run `python -m cloud.access_scope` to regenerate docs/access.md"
