"""Builders for the trace tests: a tenant with uploaded, anchored batches; the chain reader of a test app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from carbontrace.verify_bundle import Web3ChainReader
from carbontrace_protocol import flux
from carbontrace_protocol.batch import Batch, aggregate_window, build_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.proof_bundle import Trust
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading
from cloud import trace as tracelib
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import ADMIN_KEY, INTERVAL_S, DeviceKit, Tenant, auth, register_tenant, upload


def ledger_of(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


@dataclass
class Traced:
    tenant: Tenant
    batches: list[Batch] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)


def upload_batches(client: TestClient, traced: Traced, count: int, per_device: int = 2) -> None:
    gw = traced.tenant.gateway
    for _ in range(count):
        batch, readings = gw.build(per_device=per_device)
        r = upload(client, gw, batch)
        assert r.status_code == 201, r.text
        gw.accepted(batch, readings)
        traced.batches.append(batch)
        traced.readings.extend(readings)


def session_flux(device: DeviceKit, readings: list[Reading]) -> bytes:
    """What a device does when its chamber opens (carbontrace_device/chamber.py): its readings of the batch
    are the samples of one 50 s closure of a 20 L chamber over 1000 cm²; the signed flux record."""
    from carbontrace_device.chamber import ChamberSession

    mine = [r for r in readings if r.device_id == device.device_id]
    session = ChamberSession(mine[0].timestamp, 50, 20000, 1000, 101325)
    for reading in mine:
        session.add(reading)
    return flux.sign_flux(session.flux(device.device_id, "0.5.0"), device.private)


def upload_flux_batch(client: TestClient, traced: Traced) -> Batch:
    """One batch whose first device's six readings are a chamber session, its signed flux a flux leaf."""
    gw = traced.tenant.gateway
    batch, readings = gw.build(per_device=6, fluxes=lambda rs: [session_flux(gw.devices[0], rs)])
    r = upload(client, gw, batch)
    assert r.status_code == 201, r.text
    gw.accepted(batch, readings)
    traced.batches.append(batch)
    traced.readings.extend(readings)
    return batch


def register_tenant_traced(client: TestClient, name: str, devices: int = 2) -> Traced:
    """A registered tenant with nothing uploaded yet."""
    return Traced(register_tenant(client, name, devices=devices))


def tenant_with_batches(client: TestClient, name: str, batches: int = 2, devices: int = 2) -> Traced:
    traced = Traced(register_tenant(client, name, devices=devices))
    upload_batches(client, traced, batches)
    return traced


@dataclass
class RetimedUpload:
    """A stored batch whose first reading was taken before its device's time sync and re-timed by the gateway
    from the second (the reference: the same device and boot, synced)."""

    batch: Batch
    unsynced: Reading
    reference: Reading
    signed_reference: bytes
    retimed_at: int  # the time the reference gives the unsynced reading


def upload_retimed_batch(client: TestClient, traced: Traced, boot: int = 2) -> RetimedUpload:
    """The gateway's next batch (after the floor of 2024): device 0's unsynced seq n at up 10, its synced
    seq n+1 at up 60 (window start + 50), so the unsynced one is re-timed to the window start."""
    gw = traced.tenant.gateway
    gw.window_start = max(gw.window_start, 1_764_126_000)
    device = gw.devices[0]
    start, end = gw.window_start, gw.window_start + 60
    seq = device.next_seq
    unsynced = Reading(device.device_id, seq, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=610, boot=boot,
                       up=10, energy_wh=device.energy_wh + 7)
    reference = Reading(device.device_id, seq + 1, start + 50, "0.4.0", co2_ppm=611, boot=boot, up=60,
                        energy_wh=device.energy_wh + 14)
    device.next_seq += 2
    device.energy_wh += 14
    signed = [sign_reading(unsynced, device.private), sign_reading(reference, device.private)]
    aggregate = aggregate_window(device.device_id, start, end, INTERVAL_S, [unsynced, reference],
                                 get_factor(gw.factor_id), gw.baselines.get(device.device_id),
                                 {seq: start})  # the unsynced reading at its re-derived time, as the gateway does
    batch = build_batch(gw.private, gw.gateway_id, gw.site_id, gw.batch_seq, (start, end), signed, [aggregate],
                        gw.prev, end + 1, retimed={0: (start, signed[1])})
    r = upload(client, gw, batch)
    assert r.status_code == 201, r.text
    gw.accepted(batch, [unsynced, reference])
    traced.batches.append(batch)
    traced.readings.extend([unsynced, reference])
    return RetimedUpload(batch, unsynced, reference, signed[1], start)


def anchor(client: TestClient) -> None:
    report = ledger_of(client).anchorer.tick(force_checkpoint=True)
    assert report.error is None and report.anchored >= 1, report


def reader_of(client: TestClient, bundle: dict[str, Any] | None = None) -> Web3ChainReader:
    """The offline verifier's chain reader on the app's own chain (the same process for the embedded EVM),
    bound like `carbontrace verify` to the registry the bundle names (else the app's)."""
    ledger = ledger_of(client)
    address = bundle["chain"]["registry"] if bundle is not None else ledger.chain.registry().address
    return Web3ChainReader(ledger.chain.connect().w3, address)


def trust_of(client: TestClient) -> Trust:
    """The trust anchor the app publishes (what an auditor pins)."""
    return tracelib.trust_of(ledger_of(client))


def operator_headers() -> dict[str, str]:
    return auth(ADMIN_KEY)


def get(client: TestClient, path: str, key: str | None = None, **params: Any) -> Any:
    return client.get(path, params=params, headers=auth(key) if key else {})
