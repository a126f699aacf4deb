"""POST /api/v1/batches: real batches built with carbontrace_protocol.batch, re-verified by the cloud."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.batch import aggregate_window, build_batch, decode_batch
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import Reading, decode_payload, sign_reading
from tests.cloud.cloud_testkit import ADMIN_KEY, DeviceKit, auth, new_key, register_tenant, upload


def _ledger(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.ledger  # type: ignore[attr-defined]


def test_accept_retry_and_state(client: TestClient) -> None:
    tenant = register_tenant(client, "Gamma", devices=2)
    gw = tenant.gateway
    r = client.get(f"/api/v1/gateways/{gw.gateway_id}/state", headers=auth(gw.api_key))
    assert r.json() == {"last_batch_seq": None, "last_batch_hash": None}

    batch, readings = gw.build(per_device=3)
    blob = batch.encode()
    r = upload(client, gw, batch)
    assert r.status_code == 201, r.text
    receipt = r.json()
    stored = _ledger(client).store.get(receipt["cid"])
    assert receipt == {
        "batch_id": batch.id,
        "batch_hash": batch.hash.hex(),
        "cid": cid_for(stored),
        "log_index": 0,
        "leaves": 8,
        "readings": 6,
        "quarantined": 0,
        "status": "accepted",
    }
    # The content store holds the sealed blob (not the upload): only its readers' keys open it.
    assert stored != blob and blob not in stored and batch.leaves[0] not in stored
    assert _ledger(client).sealer.open(stored, batch.id) == blob
    # A retried upload of the identical batch: the same receipt, 200, nothing stored twice.
    r = upload(client, gw, batch)
    assert (r.status_code, r.json()) == (200, receipt)
    gw.accepted(batch, readings)

    batch2, readings2 = gw.build(per_device=2)
    r = upload(client, gw, batch2)
    assert r.status_code == 201, r.text
    assert r.json()["log_index"] == 1
    gw.accepted(batch2, readings2)
    r = client.get(f"/api/v1/gateways/{gw.gateway_id}/state", headers=auth(gw.api_key))
    assert r.json() == {"last_batch_seq": 1, "last_batch_hash": batch2.hash.hex()}

    device = gw.devices[0]
    r = client.get(f"/api/v1/devices/{device.device_id}/readings", headers=auth(tenant.enterprise_key))
    assert [x["seq"] for x in r.json()] == [1, 2, 3, 4, 5]
    assert [x["energy_wh"] for x in r.json()] == [1007, 1014, 1021, 1028, 1035]
    assert r.json()[0]["leaf_index"] == 0 and r.json()[3]["batch_id"] == batch2.id
    r = client.get(f"/api/v1/batches/{gw.gateway_id}/1", headers=auth(tenant.enterprise_key))
    assert r.status_code == 200 and r.json()["root"] == batch2.root.hex()


def test_baseline_carries_energy_across_batches(client: TestClient) -> None:
    """The second batch's aggregate counts energy since the last reading of the first batch: the cloud
    derives the same baseline, and a batch using no baseline (double counting) is refused."""
    tenant = register_tenant(client, "Delta", devices=1)
    gw = tenant.gateway
    batch, first = gw.build(per_device=2)
    assert upload(client, gw, batch).status_code == 201
    gw.accepted(batch, first)
    saved_baselines = dict(gw.baselines)
    gw.baselines.clear()  # a gateway that forgot the baseline counts from its first reading only
    device_seq, energy = gw.devices[0].next_seq, gw.devices[0].energy_wh
    wrong, _ = gw.build(per_device=2)
    r = upload(client, gw, wrong)
    assert r.status_code == 422 and r.json()["error"] == "aggregate_mismatch", r.text
    gw.devices[0].next_seq, gw.devices[0].energy_wh = device_seq, energy
    gw.baselines = saved_baselines
    right, _ = gw.build(per_device=2)
    r = upload(client, gw, right)
    assert r.status_code == 201, r.text
    aggregate = right.aggregates()[-1][1]
    # format 3: the baseline is the first batch's last reading with its measurement time (seq, Wh, time)
    last = max(first, key=lambda reading: reading.seq)
    assert (last.seq, last.energy_wh) == (2, 1014)
    assert aggregate["energy"]["delta_wh"] == 14
    assert aggregate["energy"]["baseline"] == [last.seq, last.energy_wh, last.timestamp]


def test_out_of_order_is_409_with_expected_seq(client: TestClient) -> None:
    tenant = register_tenant(client, "Echo", devices=1)
    gw = tenant.gateway
    b0, r0 = gw.build()
    assert upload(client, gw, b0).status_code == 201
    gw.accepted(b0, r0)
    b1, r1 = gw.build()
    gw.accepted(b1, r1)  # never uploaded: a gap
    b2, _ = gw.build()
    r = upload(client, gw, b2)
    assert r.status_code == 409
    assert r.json()["error"] == "out_of_order" and r.json()["expected_batch_seq"] == 1
    # Right seq, wrong prev (a fork of the chain).
    gw.batch_seq, gw.prev = 1, hashlib.sha256(b"not the last batch").digest()
    fork, _ = gw.build()
    r = upload(client, gw, fork)
    assert (r.status_code, r.json()["expected_batch_seq"]) == (409, 1)
    # A first batch must start from the zero hash.
    other = register_tenant(client, "Foxtrot", devices=1).gateway
    other.prev = hashlib.sha256(b"x").digest()
    first, _ = other.build()
    r = upload(client, other, first)
    assert (r.status_code, r.json()["expected_batch_seq"]) == (409, 0)


def test_rejections_are_422_and_store_nothing(client: TestClient) -> None:
    tenant = register_tenant(client, "Golf", devices=2)
    gw = tenant.gateway
    accepted, readings = gw.build(per_device=2)
    assert upload(client, gw, accepted).status_code == 201
    gw.accepted(accepted, readings)
    batch, _ = gw.build(per_device=2)
    blob = batch.encode()
    factor = get_factor(gw.factor_id)

    # Any single byte changed anywhere in the blob is refused (sampled across header and leaves).
    for position in range(0, len(blob), max(1, len(blob) // 40)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        r = upload(client, gw, bytes(tampered))
        assert r.status_code == 422, (position, r.status_code, r.text)

    # Signed with another key than the registered gateway key.
    wrong_key, _ = new_key()
    parsed = decode_batch(blob)
    resigned = build_batch(
        wrong_key,
        gw.gateway_id,
        gw.site_id,
        gw.batch_seq,
        tuple(parsed.header["window"]),
        [cbor.decode(leaf)[1] for leaf in parsed.leaves[: parsed.header["readings"]]],
        [a for _, a in parsed.aggregates()],
        gw.prev,
        parsed.header["created"],
    )
    r = upload(client, gw, resigned)
    assert (r.status_code, r.json()["error"]) == (422, "bad_gateway_signature")

    # A device this site never registered.
    stranger_key, _ = new_key()
    start, end = gw.window_start, gw.window_start + 60
    stranger = Reading("dev-stranger", 1, start, "1.0.0", co2_ppm=500)
    signed = [sign_reading(stranger, stranger_key)]
    aggregate = aggregate_window("dev-stranger", start, end, 10, [stranger], factor)
    unknown = build_batch(
        gw.private, gw.gateway_id, gw.site_id, gw.batch_seq, (start, end), signed, [aggregate], gw.prev, end
    )
    r = upload(client, gw, unknown)
    assert r.json() == {"error": "unknown_device", "detail": r.json()["detail"], "leaf_index": 0}

    # Replayed readings: the first batch's signed readings again in a new, correctly chained batch.
    old = decode_batch(accepted.encode())
    old_signed = [cbor.decode(leaf)[1] for leaf in old.leaves[: old.header["readings"]]]
    old_readings = [decode_payload(cose.parse_sign1(s).payload) for s in old_signed]
    window = tuple(old.header["window"])
    # Aggregates computed honestly with the cloud's baseline, so only the replay itself is wrong.
    old_aggregates = [
        aggregate_window(
            d.device_id,
            window[0],
            window[1],
            10,
            [x for x in old_readings if x.device_id == d.device_id],
            factor,
            gw.baselines.get(d.device_id),
        )
        for d in gw.devices
    ]
    replay = build_batch(
        gw.private, gw.gateway_id, gw.site_id, gw.batch_seq, window, old_signed, old_aggregates, gw.prev, end
    )
    r = upload(client, gw, replay)
    assert (r.status_code, r.json()["error"], r.json()["leaf_index"]) == (422, "replayed_reading", 0), r.text

    # An aggregate that does not match its readings (emissions inflated).
    claimed = [a for _, a in parsed.aggregates()]
    claimed[0]["received"] += 1
    inflated = build_batch(
        gw.private,
        gw.gateway_id,
        gw.site_id,
        gw.batch_seq,
        tuple(parsed.header["window"]),
        [cbor.decode(leaf)[1] for leaf in parsed.leaves[: parsed.header["readings"]]],
        claimed,
        gw.prev,
        parsed.header["created"],
    )
    r = upload(client, gw, inflated)
    assert (r.status_code, r.json()["error"], r.json()["leaf_index"]) == (422, "aggregate_mismatch", 4)

    # A device the site never registered is refused. (A revoked one is no longer: its readings are
    # quarantined and the batch accepted, tests/cloud/test_quarantine.py.)
    private, public = new_key()
    gw.devices.append(DeviceKit("dev-never-registered", private, public))
    unknown, _ = gw.build()
    gw.devices.pop()
    r = upload(client, gw, unknown)
    assert (r.status_code, r.json()["error"]) == (422, "unknown_device")

    # None of the above left a trace: still one batch, and the log has one leaf.
    r = client.get(f"/api/v1/gateways/{gw.gateway_id}/state", headers=auth(gw.api_key))
    assert r.json()["last_batch_seq"] == 0
    r = client.get("/api/v1/log/consistency", params={"first": 1, "second": 2})
    assert r.status_code == 404


def test_auth_and_size_limits(client: TestClient) -> None:
    a = register_tenant(client, "Hotel", devices=1)
    b = register_tenant(client, "India", devices=1)
    batch, _ = a.gateway.build()
    assert client.post("/api/v1/batches", content=batch.encode()).status_code == 401
    assert upload(client, a.gateway, batch, key="ct_" + "1" * 64).status_code == 401
    r = upload(client, a.gateway, batch, key=b.gateway.api_key)  # another gateway's key
    assert r.status_code == 403 and a.gateway.gateway_id not in r.text and b.gateway.gateway_id not in r.text
    assert upload(client, a.gateway, batch, key=a.enterprise_key).status_code == 403
    assert upload(client, a.gateway, batch, key=ADMIN_KEY).status_code == 403
    limit = _ledger(client).settings.max_batch_bytes
    r = client.post(
        "/api/v1/batches",
        content=b"\x00" * (limit + 1),
        headers={"Content-Type": "application/cbor", **auth(a.gateway.api_key)},
    )
    assert r.status_code == 413
    r = upload(client, a.gateway, b"\xa1\x61x\x01")  # CBOR, but not a batch
    assert (r.status_code, r.json()["error"]) == (422, "malformed_batch")
