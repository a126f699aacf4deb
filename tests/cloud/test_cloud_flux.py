"""A chamber session's flux through the cloud to the chain: the device's session code (carbontrace_device/chamber.py)
makes the flux of readings that travel in the same batch, the cloud re-verifies the batch with its flux leaf
(real ingest, real database), anchors the log on the chain, and an independent check walks from the signed flux
up to the on-chain checkpoint. Forged flux leaves are refused with their reason."""

from __future__ import annotations

from carbontrace_device.chamber import ChamberSession
from fastapi.testclient import TestClient

from carbontrace_protocol import cbor, cose, flux, merkle, p256
from carbontrace_protocol.batch import LEAF_FLUX, parse_header, parse_leaf
from carbontrace_protocol.reading import Reading
from carbontrace_protocol.verify import verify_es256, verify_flux
from cloud import models
from tests.cloud.cloud_testkit import DeviceKit, register_tenant, upload


def session_flux(device: DeviceKit, readings: list[Reading]) -> bytes:
    """What the device does when its chamber opens: the session's readings are the samples."""
    mine = [r for r in readings if r.device_id == device.device_id]
    session = ChamberSession(mine[0].timestamp, 50, 20000, 1000, 101325)
    for reading in mine:
        session.add(reading)
    return flux.sign_flux(session.flux(device.device_id, "0.5.0"), device.private)


def test_a_chamber_flux_travels_in_its_batch_and_traces_to_the_chain(client: TestClient) -> None:
    tenant = register_tenant(client, "Greenhouse Co", devices=2)
    gw = tenant.gateway
    chamber = gw.devices[0]
    batch, readings = gw.build(per_device=6, fluxes=lambda rs: [session_flux(chamber, rs)])
    r = upload(client, gw, batch)
    assert r.status_code == 201, r.text
    assert r.json()["leaves"] == 12 + 2 + 1 and r.json()["readings"] == 12
    gw.accepted(batch, readings)
    ledger = client.app.state.ledger  # type: ignore[attr-defined]
    # the cloud's SQL indexes the flux like a reading: where its leaf is, its samples, session and QA; no figures
    with ledger.session_factory() as session:
        rows = session.query(models.Flux).all()
        assert [(f.batch_id, f.leaf_index, f.device_id, f.first_seq, f.last_seq, f.qa) for f in rows] == [
            (batch.id, 14, chamber.device_id, 1, 6, "ok")]
        assert not {"flux", "flux_e3", "slope", "flux_se"} & set(models.Flux.__table__.columns.keys())
    report = ledger.anchorer.tick(force_checkpoint=True)
    assert (report.created, report.anchored, report.error) == (1, 1, None)

    # Independently, from the bytes up: the flux leaf, its device signature, the batch root, the gateway's
    # signature on the header, the header in the cloud's log, the log root on the chain.
    index, signed = batch.fluxes()[0]
    assert parse_leaf(batch.leaves[index]) == (LEAF_FLUX, signed)
    record = verify_flux(signed, chamber.public)
    assert record.qa == flux.QA_OK and record.flux_e3 > 0  # CO2 rising 0.1 ppm/s: the soil emits
    assert record.seq == [1, 6] and record.n == 6  # the batch's own readings of the chamber device
    hashes = batch.leaf_hashes()
    message, header = parse_header(batch.signed_header)
    assert verify_es256(gw.public, message.signed_bytes(), message.signature)
    assert merkle.verify_inclusion(hashes[index], index, len(hashes), merkle.inclusion_proof(hashes, index),
                                   header["root"])
    onchain = ledger.chain.registry().checkpoint(0)
    assert onchain.tree_size == 1
    r = client.get("/api/v1/log/inclusion", params={"batch_id": batch.id, "tree_size": onchain.tree_size})
    proof = [bytes.fromhex(p) for p in r.json()["proof"]]
    assert merkle.verify_inclusion(merkle.leaf_hash(batch.signed_header), r.json()["log_index"],
                                   onchain.tree_size, proof, onchain.root)


def _forged(body: dict[str, object], device: DeviceKit) -> bytes:
    payload = cbor.encode(body)
    protected = cose.protected_header(device.device_id.encode(), flux.CONTENT_FORMAT_CBOR)
    return cbor.encode(cbor.Tag(18, [protected, {}, payload,
                                     p256.sign(device.private, cose.sig_structure(protected, payload))]))


def test_forged_flux_leaves_are_refused(client: TestClient) -> None:
    tenant = register_tenant(client, "Soil Lab", devices=1)
    other = register_tenant(client, "Elsewhere", devices=1)
    gw = tenant.gateway
    chamber = gw.devices[0]

    def edited(readings: list[Reading]) -> list[bytes]:
        body = verify_flux(session_flux(chamber, readings), chamber.public).as_map()
        body["flux"] = cbor.Tag(4, [-3, -5000])  # an emission re-signed as a removal
        return [_forged(body, chamber)]

    def strangers(readings: list[Reading]) -> list[bytes]:
        stranger = other.gateway.devices[0]
        return [session_flux(stranger, [Reading(stranger.device_id, r.seq, r.timestamp, r.firmware,
                                                co2_ppm=r.co2_ppm, temperature_centi_c=r.temperature_centi_c)
                                        for r in readings])]

    for make, reason in ((edited, "inconsistent_flux"), (strangers, "unknown_device")):
        batch, _ = gw.build(per_device=6, fluxes=make)
        r = upload(client, gw, batch)
        assert r.status_code == 422 and r.json()["error"] == reason, r.text
