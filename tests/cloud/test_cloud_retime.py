"""The cloud re-derives the time of each re-timed reading from the signed reference the batch carries, and
refuses (422, with the reason) a batch whose claimed time is not what the device's own readings give."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from carbontrace_protocol.batch import Batch, aggregate_window, build_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading
from tests.cloud.cloud_testkit import INTERVAL_S, GatewayKit, auth, new_key, register_tenant, upload


def _batch(gw: GatewayKit, retimed: dict[int, tuple[int, bytes]] | None, reference: Reading | None = None,
           reference_key: int | None = None) -> tuple[Batch, bytes]:
    """seq 1 taken 50 s of uptime before the boot's first synced reading (seq 2, at the window start + 50)."""
    device = gw.devices[0]
    start, end = gw.window_start, gw.window_start + 60
    unsynced = Reading(device.device_id, 1, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=610, boot=2, up=10,
                       energy_wh=1007)
    synced = reference or Reading(device.device_id, 2, start + 50, "0.4.0", co2_ppm=611, boot=2, up=60,
                                  energy_wh=1014)
    signed = [sign_reading(unsynced, device.private), sign_reading(synced, reference_key or device.private)]
    evidence = {0: (start, signed[1])} if retimed is None else retimed
    # the unsynced reading at the time the batch claims for it, as the gateway's batcher builds it
    times = {unsynced.seq: evidence[0][0]} if 0 in evidence else None
    aggregate = aggregate_window(device.device_id, start, end, INTERVAL_S, [unsynced, synced],
                                 get_factor(gw.factor_id), None, times)
    batch = build_batch(gw.private, gw.gateway_id, gw.site_id, gw.batch_seq, (start, end), signed, [aggregate],
                        gw.prev, end + 1, retimed=evidence)
    return batch, signed[1]


def _refused(client: TestClient, gw: GatewayKit, batch: Batch) -> Any:
    r = upload(client, gw, batch)
    assert r.status_code == 422, r.text
    return r.json()


def test_a_retimed_reading_is_stored_at_the_time_its_reference_gives(sqlite_client: TestClient) -> None:
    client = sqlite_client
    tenant = register_tenant(client, "Retime", devices=1)
    gw = tenant.gateway
    gw.window_start = start = 1_764_126_000  # re-timed readings lie after the floor (2024)
    _, reference = _batch(gw, None)

    # the gateway claims another time than the signed reference gives
    wrong = _refused(client, gw, _batch(gw, {0: (start + 1, reference)})[0])
    assert (wrong["error"], wrong["leaf_index"]) == ("retime_mismatch", 0)
    # no evidence at all: an unsynced reading has no time of its own
    assert _refused(client, gw, _batch(gw, {})[0])["error"] == "unsynced_without_reference"
    # evidence from another boot of the device
    device = gw.devices[0]
    other_boot = Reading(device.device_id, 2, start + 50, "0.4.0", co2_ppm=611, boot=3, up=60, energy_wh=1014)
    batch, _ = _batch(gw, None, other_boot)
    assert _refused(client, gw, batch)["error"] == "retime_different_boot"
    # a "reference" the device never signed
    forger, _ = new_key()
    forged = Reading(device.device_id, 2, start + 5000, "0.4.0", co2_ppm=611, boot=2, up=60, energy_wh=1014)
    batch = _batch(gw, {0: (start + 4950, sign_reading(forged, forger))})[0]
    assert _refused(client, gw, batch)["error"] == "retime_bad_reference"
    # a format-1 reading before the sync: seconds since boot where the time goes, nothing to re-time it by
    old = Reading(device.device_id, 1, 40, "0.1.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=610, energy_wh=1007)
    aggregate = aggregate_window(device.device_id, start, start + 60, INTERVAL_S, [old], get_factor(gw.factor_id))
    batch = build_batch(gw.private, gw.gateway_id, gw.site_id, gw.batch_seq, (start, start + 60),
                        [sign_reading(old, device.private)], [aggregate], gw.prev, start + 61)
    assert _refused(client, gw, batch)["error"] == "unsynced_without_boot"
    r = client.get(f"/api/v1/devices/{device.device_id}/readings", headers=auth(tenant.enterprise_key))
    assert r.json() == []  # nothing of the refused batches was stored

    batch, _ = _batch(gw, None)
    r = upload(client, gw, batch)
    assert r.status_code == 201, r.text
    r = client.get(f"/api/v1/devices/{device.device_id}/readings", headers=auth(tenant.enterprise_key))
    assert [(x["seq"], x["timestamp"]) for x in r.json()] == [(1, start), (2, start + 50)]  # not 1970
    # trace reads the leaf back: the SQL row's time agrees with the blob's evidence for it
    r = client.get("/api/v1/trace/retrieve", params={"device_id": device.device_id, "types": "co2", "start": start,
                                                     "end": start + 1}, headers=auth(tenant.enterprise_key))
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    assert {s["step"]: s["ok"] for s in item["steps"]}.get("sql_index") is True, item["steps"]
