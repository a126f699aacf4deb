"""At rest, SQL holds no measured value of a reading: the readings table says which measurements a reading
carries (a bitmask), the values stay in the sealed batch blob. Trace and the readings route read them there."""

from __future__ import annotations

from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from carbontrace_protocol import cbor
from carbontrace_protocol.measures import FIELD_BITS, measures_of, types_mask
from carbontrace_protocol.views import DataType
from cloud import models
from cloud.db import alembic_config, make_engine
from cloud.models import Base
from tests.cloud.cloud_testkit import ADMIN_KEY, auth, register_tenant, upload

# Values no id, time, count or other figure of the test happens to have, so finding one means a leak.
CO2, TEMPERATURE, HUMIDITY, POWER = 31_337, -3187, 8273, 918_273


def _sql_cells(database_url: str) -> list[tuple[str, str, Any]]:
    """(table, column, value) of every cell of every table, but for fixed-size binary ones (hashes, keys:
    random bytes that could hold a short CBOR integer by chance, never a reading)."""
    engine = make_engine(database_url)
    cells = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                cells += [
                    (table.name, column, value)
                    for column, value in row._mapping.items()
                    if not (isinstance(value, bytes) and getattr(table.c[column].type, "length", None))
                ]
    engine.dispose()
    return cells


def _leaks(cells: list[tuple[str, str, Any]], values: set[int]) -> list[tuple[str, str, Any]]:
    """Cells holding one of ``values``: as an integer, or CBOR-encoded inside bytes (as a leaf holds it). The
    aggregate leaves are searched too: they hold salted commitments, not the CO2/T/RH figures."""
    encoded = [cbor.encode(v) for v in values]
    found = []
    for table, column, value in cells:
        as_integer = isinstance(value, int) and not isinstance(value, bool) and value in values
        in_bytes = isinstance(value, bytes) and any(e in value for e in encoded)
        if as_integer or in_bytes:
            found.append((table, column, value))
    return found


def test_sql_holds_no_measured_value_of_a_reading(client: TestClient, database_url: str) -> None:
    tenant = register_tenant(client, "AtRest")
    gateway = tenant.gateway
    sent = []
    for _ in range(2):
        batch, readings = gateway.build(co2=CO2, temperature=TEMPERATURE, humidity=HUMIDITY, power=POWER)
        assert upload(client, gateway, batch).status_code == 201
        gateway.accepted(batch, readings)
        sent += readings
    values = {v for r in sent for v in (r.co2_ppm, r.temperature_centi_c, r.humidity_centi_pct, r.power_deci_w)}
    assert values >= {CO2, CO2 + 1, TEMPERATURE, HUMIDITY, POWER}

    cells = _sql_cells(database_url)
    # energy: no per-reading counter at rest, one baseline per device (the counter its last window ended at,
    # which the public aggregate shows too)
    assert not [c for t, c, _ in cells if c == "energy_wh" and t != "energy_baselines"]
    last = {d.device_id: max((r for r in sent if r.device_id == d.device_id), key=lambda r: r.seq) for d in gateway.devices}
    assert sorted(v for t, c, v in cells if (t, c) == ("energy_baselines", "energy_wh")) == sorted(
        r.energy_wh for r in last.values()
    )
    assert len({(t, v) for t, c, v in cells if t == "readings" and c == "id"}) == len(sent)
    assert _leaks([("readings", "co2_ppm", CO2)], values), "the search finds a value where there is one"
    assert _leaks(cells, values) == []
    measures = sorted(v for t, c, v in cells if t == "readings" and c == "measures")
    assert measures == sorted(measures_of(r) for r in sent) and set(measures) == {sum(FIELD_BITS.values())}

    # Callers allowed to see values still get them, decoded from the opened blob.
    device = gateway.devices[0].device_id
    r = client.get(f"/api/v1/devices/{device}/readings", headers=auth(tenant.enterprise_key))
    assert r.status_code == 200, r.text
    mine = [x for x in sent if x.device_id == device]
    assert [
        (x["seq"], x["co2_ppm"], x["temperature_centi_c"], x["humidity_centi_pct"], x["power_deci_w"], x["energy_wh"])
        for x in r.json()
    ] == [(x.seq, x.co2_ppm, x.temperature_centi_c, x.humidity_centi_pct, x.power_deci_w, x.energy_wh) for x in mine]

    # Trace still locates readings by type (the mask) and shows the verified values to the enterprise and a
    # regulator.
    regulator = client.post("/api/v1/regulators", json={"label": "reg"}, headers=auth(ADMIN_KEY)).json()["api_key"]
    for key in (tenant.enterprise_key, regulator):
        r = client.get("/api/v1/trace/retrieve", params={"device_id": device, "types": "temperature"},
                       headers=auth(key))
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [i["view"]["seq"] for i in items] == [x.seq for x in mine]
        assert {i["view"]["temperature_centi_c"] for i in items} == {TEMPERATURE}
        assert all({s["step"]: s["ok"] for s in i["steps"]}["sql_index"] for i in items)


def test_type_masks_are_the_stored_bit_assignment() -> None:
    # Stored masks depend on these bits: a change here would silently change what old rows claim.
    assert FIELD_BITS == {
        "co2_ppm": 1, "temperature_centi_c": 2, "humidity_centi_pct": 4, "energy_wh": 8, "power_deci_w": 16,
    }
    assert types_mask([DataType.ENERGY]) == 8 | 16 and types_mask([DataType.EMISSIONS]) == 0
    assert types_mask([DataType.CO2, DataType.HUMIDITY]) == 1 | 4


def test_migration_0009_turns_values_into_the_measures_mask(database_url: str) -> None:
    engine = make_engine(database_url)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0008")
    rows = {  # seq: (co2, temperature, humidity, energy, power)
        1: (CO2, TEMPERATURE, HUMIDITY, 1000, POWER),
        2: (None, None, None, 1007, POWER),  # CO2 sensor fault
        3: (CO2, TEMPERATURE, HUMIDITY, None, None),  # meter fault
        4: (None, None, None, None, None),
    }
    with engine.begin() as connection:
        for statement in (
            "INSERT INTO enterprises (id, name, chain_account, created_at) VALUES ('ENT-1', 'E', '0xabc', 1)",
            "INSERT INTO sites (id, enterprise_id, name, emission_factor, created_at) VALUES ('s', 'ENT-1', 'S', 'f', 1)",
            "INSERT INTO gateways (id, site_id, public_key, status, created_at) VALUES ('g', 's', :b, 'active', 1)",
            "INSERT INTO blobs (cid, size, kind, pinned, created_at) VALUES ('c', 1, 'batch', true, 1)",
            "INSERT INTO batches (id, gateway_id, site_id, batch_seq, batch_hash, prev_hash, root, blob_sha256, "
            "signed_header, cid, window_start, window_end, leaves, readings, log_index, received_at) "
            "VALUES ('b', 'g', 's', 0, :b, :b, :b, :b, :b, 'c', 0, 60, 4, 4, 0, 1)",
        ):
            connection.execute(text(statement), {"b": b"\x00"})
        for seq, (co2, temperature, humidity, energy, power) in rows.items():
            connection.execute(
                text("INSERT INTO readings (device_id, seq, timestamp, flags, co2_ppm, temperature_centi_c, "
                     "humidity_centi_pct, energy_wh, power_deci_w, batch_id, leaf_index) "
                     "VALUES ('d', :seq, 100, 0, :co2, :t, :rh, :e, :p, 'b', :seq)"),
                {"seq": seq, "co2": co2, "t": temperature, "rh": humidity, "e": energy, "p": power},
            )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0009")
    with engine.connect() as connection:
        migrated = dict(connection.execute(text("SELECT seq, measures FROM readings")).all())
        energy = dict(connection.execute(text("SELECT seq, energy_wh FROM readings")).all())
        columns = set(connection.execute(text("SELECT * FROM readings")).keys())
    assert migrated == {1: 1 | 2 | 4 | 8 | 16, 2: 8 | 16, 3: 1 | 2 | 4, 4: 0}
    assert energy == {1: 1000, 2: 1007, 3: None, 4: None}
    assert not columns & {"co2_ppm", "temperature_centi_c", "humidity_centi_pct", "power_deci_w"}
    # 0010: the per-reading counters become one baseline per gateway and device (the highest seq with energy)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        baselines = connection.execute(text("SELECT gateway_id, device_id, seq, energy_wh FROM energy_baselines")).all()
        columns = set(connection.execute(text("SELECT * FROM readings")).keys())
        quarantine_columns = set(connection.execute(text("SELECT * FROM quarantined_leaves")).keys())
    engine.dispose()
    assert [tuple(b) for b in baselines] == [("g", "d", 2, 1007)]
    assert "energy_wh" not in columns | quarantine_columns


def test_a_corrupted_blob_makes_the_readings_route_503_not_crash(client: TestClient) -> None:
    """The values live only in the sealed blob: when it cannot be read back the answer says so (503, which
    batch), it is not a 500 and nothing is served from anywhere else."""
    tenant = register_tenant(client, "AtRest-corrupt", devices=1)
    gateway = tenant.gateway
    batch, readings = gateway.build(co2=CO2)
    assert upload(client, gateway, batch).status_code == 201
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    with ledger.session_factory() as session:
        stored = session.get(models.Batch, batch.id)
        assert stored is not None
        cid = stored.cid
    path = ledger.store.local.directory / cid[-2:] / cid
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    r = client.get(f"/api/v1/devices/{readings[0].device_id}/readings", headers=auth(tenant.enterprise_key))
    assert r.status_code == 503 and r.json()["error"] == "blob_unavailable", r.text
    assert batch.id in r.json()["detail"]
