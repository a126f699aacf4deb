"""Chamber fluxes as their own leaf type in the gateway's Merkle batch (CBOR [3, <signed flux>], after the
aggregates, counted by the header's ``fluxes``): built, parsed, re-verified end to end by batch_verify, proved
by inclusion, shown by views as their own kind; every misplaced or forged flux leaf refused with its reason."""

from __future__ import annotations

import random

import pytest

from carbontrace_protocol import cbor, cose, flux, merkle, p256, views
from carbontrace_protocol.batch import (
    LEAF_FLUX,
    ZERO_HASH,
    MalformedBatch,
    aggregate_window,
    build_batch,
    decode_batch,
    flux_leaf,
    leaf_count,
    parse_header,
    parse_leaf,
    sign_batch,
)
from carbontrace_protocol.batch_verify import BatchRejected, verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import Reading, sign_reading

GW = p256.private_key_from_bytes(bytes(range(1, 33)))
GW_PUBLIC = p256.public_key(GW)
DEV = p256.private_key_from_bytes(bytes(range(2, 34)))
OTHER = p256.private_key_from_bytes(bytes(range(3, 35)))
KEYS = {"chamber-1": p256.public_key(DEV), "chamber-2": p256.public_key(OTHER)}
WINDOW = (1_764_126_000, 1_764_126_900)


def record(device: str = "chamber-1", first: int = 10, slope: float = -0.3, seed: int = 1) -> flux.Flux:
    rng = random.Random(seed)
    samples = [(t, round(500 + slope * t + rng.gauss(0, 1))) for t in range(0, 181, 5)]
    return flux.compute_flux(device, "0.5.0", [WINDOW[0] + 60, WINDOW[0] + 240], [first, first + 36], samples,
                             20000, 1000, 22000, 101000)


def readings(device: str = "chamber-1", key: int = DEV) -> list[bytes]:
    return [sign_reading(Reading(device, s, WINDOW[0] + 60 + 5 * (s - 10), "0.5.0", co2_ppm=500 - s), key)
            for s in range(10, 13)]


def aggregate(device: str, signed: list[bytes]) -> dict[str, object]:
    from carbontrace_protocol.reading import decode_payload  # the readings' own values

    decoded = [decode_payload(cose.parse_sign1(s).payload) for s in signed]
    return aggregate_window(device, WINDOW[0], WINDOW[1], 60, decoded, get_factor())


def batch_with(fluxes: list[bytes], signed: list[bytes] | None = None):  # type: ignore[no-untyped-def]
    signed = readings() if signed is None else signed
    aggregates = [aggregate("chamber-1", signed)] if signed else []
    return build_batch(GW, "gw-1", "site-1", 0, WINDOW, signed, aggregates, ZERO_HASH, WINDOW[1] + 1,
                       signed_fluxes=fluxes)


def verify(batch):  # type: ignore[no-untyped-def]
    return verify_batch(batch.encode(), GW_PUBLIC, KEYS.get, lambda i: get_factor(i), lambda _d: None)


def test_a_batch_carries_its_fluxes_after_the_aggregates_and_verifies() -> None:
    up, down = flux.sign_flux(record(), DEV), flux.sign_flux(record("chamber-2", slope=0.4, seed=2), OTHER)
    batch = batch_with([up, down])
    header = batch.header
    assert (header["readings"], header["aggregates"], header["fluxes"]) == (3, 1, 2) and leaf_count(header) == 6
    assert [parse_leaf(leaf)[0] for leaf in batch.leaves[4:]] == [LEAF_FLUX, LEAF_FLUX]
    assert batch.fluxes() == [(4, up), (5, down)]
    verified = verify(decode_batch(batch.encode()))
    assert [(f.leaf_index, f.flux, f.quarantine) for f in verified.fluxes] == [
        (4, record(), None), (5, record("chamber-2", slope=0.4, seed=2), None)]
    assert len(verified.readings) == 3 and len(verified.aggregates) == 1
    # each flux leaf is proved under the signed root like any leaf
    hashes = batch.leaf_hashes()
    for index in (4, 5):
        assert merkle.verify_inclusion(hashes[index], index, 6, merkle.inclusion_proof(hashes, index), batch.root)
    kind, content = views.leaf_content(batch.leaves[4])
    assert kind == views.KIND_FLUX and content["flux"] == {"e": -3, "m": record().flux_e3}
    assert views.leaf_time(kind, content) == (WINDOW[0] + 60, WINDOW[0] + 240)
    assert views.leaf_device(kind, content) == "chamber-1"
    assert views.selects(kind, content, frozenset({views.DataType.FLUX}))
    assert not views.selects(kind, content, frozenset(views.DataType) - {views.DataType.FLUX})  # no other type
    assert "flux" in views.fields_in_clear(batch.leaves[4]) and views.committed_fields(batch.leaves[4]) == frozenset()


def test_a_batch_of_fluxes_only() -> None:
    batch = batch_with([flux.sign_flux(record(), DEV)], signed=[])
    assert (batch.header["readings"], batch.header["aggregates"], batch.header["fluxes"]) == (0, 0, 1)
    assert len(verify(batch).fluxes) == 1


def test_without_fluxes_the_header_has_no_fluxes_field() -> None:
    batch = batch_with([])
    assert "fluxes" not in batch.header and batch.fluxes() == []
    assert verify(batch).fluxes == []


def resign(batch, leaves: list[bytes], readings_count: int, flux_leaves: int):  # type: ignore[no-untyped-def]
    return sign_batch(GW, "gw-1", "site-1", 0, WINDOW, leaves, readings_count, batch.openings, ZERO_HASH,
                      WINDOW[1] + 1, flux_leaves=flux_leaves)


def _forged_flux_bytes(body: dict[str, object], key: int, kid: bytes = b"chamber-1") -> bytes:
    payload = cbor.encode(body)
    protected = cose.protected_header(kid, flux.CONTENT_FORMAT_CBOR)
    return cbor.encode(cbor.Tag(18, [protected, {}, payload, p256.sign(key, cose.sig_structure(protected, payload))]))


def test_forged_or_misplaced_flux_leaves_are_refused() -> None:
    good = flux.sign_flux(record(), DEV)
    base = batch_with([good])
    leaves = list(base.leaves)
    cases: list[tuple[str, object, str]] = []
    # signed by another device's key under chamber-1's id
    cases.append(("another key", resign(base, [*leaves[:4], flux_leaf(flux.sign_flux(record(), OTHER))], 3, 1),
                  "bad_signature"))
    edited = record().as_map()
    edited["flux"] = cbor.Tag(4, [-3, 1])
    cases.append(("edited and re-signed", resign(base, [*leaves[:4], flux_leaf(_forged_flux_bytes(edited, DEV))], 3, 1),
                  "inconsistent_flux"))
    cases.append(("unknown device", resign(base, [*leaves[:4], flux_leaf(flux.sign_flux(record("chamber-9"), DEV))],
                                           3, 1), "unknown_device"))
    cases.append(("twice", resign(base, [*leaves[:4], flux_leaf(good), flux_leaf(good)], 3, 2), "duplicate_flux"))
    cases.append(("before the aggregate", resign(base, [*leaves[:3], flux_leaf(good), leaves[3]], 3, 1),
                  "malformed_batch"))
    cases.append(("a reading in a flux leaf", resign(base, [*leaves[:4], flux_leaf(readings()[0])], 3, 1),
                  "not_a_flux"))
    cases.append(("not counted", resign(base, leaves, 3, 0), "malformed_batch"))  # counted as an aggregate
    for name, batch, reason in cases:
        with pytest.raises(BatchRejected) as caught:
            verify(batch)
        assert caught.value.reason == reason, (name, caught.value)


def test_header_fluxes_field_is_strict() -> None:
    batch = batch_with([flux.sign_flux(record(), DEV)])
    for bad in (0, -1, True, "1"):
        header = dict(batch.header, fluxes=bad)
        with pytest.raises(MalformedBatch, match="fluxes"):
            parse_header(bytes(cose.sign1(GW, b"gw-1", cbor.encode(header))))
    with pytest.raises(MalformedBatch):
        parse_leaf(cbor.encode([LEAF_FLUX, {"not": "bytes"}]))
