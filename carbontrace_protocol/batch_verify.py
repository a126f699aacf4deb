"""Re-verification of a gateway batch: trust nothing upstream (the cloud's ingestion check).

Every part is re-derived with the functions that built it: the gateway signature on the header, the
Merkle root over all leaves, every device signature, and every aggregate recomputed from its readings
and compared with what its field openings disclose (every field committed, every opening matching).
The first defect rejects the whole batch with a ``BatchRejected`` naming the reason and, where there is
one, the leaf index.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from carbontrace_protocol import cbor, cose, disclosure, merkle
from carbontrace_protocol.batch import (
    AGGREGATE_ATTRIBUTED_VERSION,
    LEAF_AGGREGATE,
    LEAF_FLUX,
    LEAF_READING,
    Batch,
    MalformedBatch,
    aggregate_window,
    content_version,
    decode_batch,
    leaf_count,
    parse_leaf,
)
from carbontrace_protocol.emission_factors import EmissionFactor, Publication, Region
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.flux import Flux
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading
from carbontrace_protocol.retime import MISMATCH, UNSYNCED_WITHOUT_BOOT, RetimeRejected, required_timestamp
from carbontrace_protocol.verify import parse_sign1, verify_es256, verify_flux, verify_reading, verify_sign1


class BatchRejected(ProtocolError):
    """A batch failed verification; ``reason`` is a stable code, ``leaf_index`` the failing leaf if any."""

    def __init__(self, reason: str, message: str, leaf_index: int | None = None) -> None:
        super().__init__(message if leaf_index is None else f"leaf {leaf_index}: {message}")
        self.reason = reason
        self.leaf_index = leaf_index


QUARANTINE_DEVICE_REVOKED = "device_revoked"
# Signed with a key the (still active) device had before a rotation: in flight at the gateway when it rotated.
QUARANTINE_ROTATED_KEY = "rotated_device_key"


class VerifiedReading:
    """A reading whose signature verified. ``quarantine`` is None for a reading that counts, else the reason
    it is kept but not counted (its device was revoked after it signed: the reading is authentic, its
    device no longer trusted)."""

    def __init__(
        self, leaf_index: int, signed: bytes, reading: Reading, quarantine: str | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.leaf_index = leaf_index
        self.signed = signed
        self.reading = reading
        self.quarantine = quarantine
        # When it was measured: the reading's own time, or for an unsynced one the time re-derived from the
        # signed reference the batch carries for it (``retimed``)
        self.timestamp: int = reading.timestamp if reading.timestamp is not None else int(timestamp or 0)


class VerifiedFlux:
    """A chamber flux record whose device signature verified (carbontrace_protocol/flux.py); ``quarantine`` as
    for a reading."""

    def __init__(self, leaf_index: int, signed: bytes, flux: Flux, quarantine: str | None = None) -> None:
        self.leaf_index = leaf_index
        self.signed = signed
        self.flux = flux
        self.quarantine = quarantine


class VerifiedBatch:
    def __init__(
        self, batch: Batch, readings: list[VerifiedReading], aggregates: list[tuple[int, dict[str, Any]]],
        fluxes: list[VerifiedFlux] | None = None,
    ) -> None:
        self.batch = batch
        self.readings = readings
        self.aggregates = aggregates
        self.fluxes = fluxes or []
        # Devices whose readings (and so whose aggregate) are quarantined: kept in the tree, not counted. The
        # aggregate's reason is its device's first quarantined reading's.
        self.quarantine_reasons: dict[str, str] = {}
        for r in readings:
            if r.quarantine is not None:
                self.quarantine_reasons.setdefault(r.reading.device_id, r.quarantine)
        self.quarantined_devices = set(self.quarantine_reasons)

    @property
    def counted_readings(self) -> list[VerifiedReading]:
        return [r for r in self.readings if r.quarantine is None]

    @property
    def counted_aggregates(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, a) for i, a in self.aggregates if a.get("device") not in self.quarantined_devices]

    @property
    def quarantined_aggregates(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, a) for i, a in self.aggregates if a.get("device") in self.quarantined_devices]


DeviceKeyLookup = Callable[[str], "bytes | None"]
RotatedKeysLookup = Callable[[str], "Sequence[bytes]"]
FactorLookup = Callable[[str], "EmissionFactor | None"]
# (seq, Wh, measurement time or None) of a device's baseline, or None (batch.Baseline)
BaselineLookup = Callable[[str], "Sequence[int | None] | None"]
_Signed = TypeVar("_Signed", Reading, Flux)  # what a device-signed leaf verifies into


def verify_batch(
    blob_or_batch: bytes | Batch,
    gateway_public_key: bytes,
    device_key: DeviceKeyLookup,
    factor: FactorLookup,
    baseline: BaselineLookup,
    revoked_device_key: DeviceKeyLookup | None = None,
    rotated_device_keys: RotatedKeysLookup | None = None,
) -> VerifiedBatch:
    """Verify a batch end to end.

    ``device_key(device_id)`` gives the registered, active key of a device of this gateway's site (None if
    unknown); ``factor(id)`` the emission factor the site may use (None if not allowed);
    ``baseline(device_id)`` the (seq, energy Wh, measurement time or None) of the device's highest-sequence
    reading with energy in batches accepted before (None for none). ``revoked_device_key(device_id)`` the last
    key of a device of the site that was revoked (None if none): a reading that verifies under it is
    quarantined, with its device's aggregate, instead of failing the batch; the gateway signed it before it
    knew of the revocation.
    ``rotated_device_keys(device_id)`` the keys an active device had before its current one (rotated out): a
    reading that fails under the current key but verifies under one of them is quarantined the same way
    (``rotated_device_key``): it was in flight when the key rotated.
    """
    try:
        batch = blob_or_batch if isinstance(blob_or_batch, Batch) else decode_batch(blob_or_batch)
    except ProtocolError as err:
        raise BatchRejected(getattr(err, "reason", "malformed_batch"), str(err)) from err
    header = batch.header
    message = cose.parse_sign1(batch.signed_header)
    if not verify_es256(gateway_public_key, message.signed_bytes(), message.signature):
        raise BatchRejected("bad_gateway_signature", "gateway signature on the batch header does not verify")
    if leaf_count(header) != len(batch.leaves):
        raise BatchRejected(
            "count_mismatch",
            f"header counts {leaf_count(header)} leaves, batch has {len(batch.leaves)}",
        )
    if merkle.root(batch.leaf_hashes()) != batch.root:
        raise BatchRejected("root_mismatch", "Merkle root of the leaves is not the root in the signed header")

    readings: list[VerifiedReading] = []
    fluxes: list[VerifiedFlux] = []
    seen: set[tuple[str, int]] = set()
    first_flux = header["readings"] + header["aggregates"]
    for index, leaf in enumerate(batch.leaves):
        try:
            kind, body = parse_leaf(leaf)
        except MalformedBatch as err:
            raise BatchRejected(err.reason, str(err), index) from err
        expected_kind = (
            LEAF_READING if index < header["readings"] else LEAF_AGGREGATE if index < first_flux else LEAF_FLUX
        )
        if kind != expected_kind:
            raise BatchRejected("malformed_batch", "readings come first, then aggregates, then fluxes", index)
        if kind == LEAF_FLUX:
            fluxes.append(_verified_flux(index, body, fluxes, device_key, revoked_device_key, rotated_device_keys))
            continue
        if kind == LEAF_AGGREGATE:
            if not disclosure.is_committed(body):  # in clear, it would show CO2 to whoever sees the leaf
                raise BatchRejected("aggregate_in_clear", "aggregate leaves must commit to each field", index)
            continue
        message, key, quarantine = _leaf_key(index, body, device_key, revoked_device_key)
        device_id = message.kid.decode()
        try:
            reading = verify_sign1(message, key)  # parsed once, by _leaf_key
        except ProtocolError as err:
            old = None
            if err.reason == "bad_signature" and quarantine is None and rotated_device_keys is not None:
                old = _verified_under_any(body, rotated_device_keys(device_id), verify_reading)
            if old is None:
                raise BatchRejected(err.reason, str(err), index) from err
            (reading, key), quarantine = old, QUARANTINE_ROTATED_KEY
        if (reading.device_id, reading.seq) in seen:
            raise BatchRejected("duplicate_reading", f"{reading.device_id} seq {reading.seq} twice", index)
        seen.add((reading.device_id, reading.seq))
        timestamp = _retimed_time(batch, index, reading, key)
        readings.append(VerifiedReading(index, body, reading, quarantine, timestamp))

    try:
        aggregates = batch.aggregates()
    except ProtocolError as err:
        raise BatchRejected(getattr(err, "reason", "bad_opening"), str(err)) from err
    _verify_aggregates(batch, readings, aggregates, factor, baseline)
    return VerifiedBatch(batch, readings, aggregates, fluxes)


def _verified_flux(
    index: int,
    body: bytes,
    earlier: list[VerifiedFlux],
    device_key: DeviceKeyLookup,
    revoked_device_key: DeviceKeyLookup | None,
    rotated_device_keys: RotatedKeysLookup | None,
) -> VerifiedFlux:
    """A flux leaf verified under its device's key (quarantined under a revoked or rotated-out one, as a
    reading is), its record consistent (flux.check_consistent), no two for the same samples."""
    message, key, quarantine = _leaf_key(index, body, device_key, revoked_device_key)
    device_id = message.kid.decode()
    try:
        record = verify_flux(body, key)
    except ProtocolError as err:
        old = None
        if err.reason == "bad_signature" and quarantine is None and rotated_device_keys is not None:
            old = _verified_under_any(body, rotated_device_keys(device_id), verify_flux)
        if old is None:
            raise BatchRejected(err.reason, str(err), index) from err
        (record, _), quarantine = old, QUARANTINE_ROTATED_KEY
    if any(f.flux.device_id == record.device_id and f.flux.seq[0] == record.seq[0] for f in earlier):
        raise BatchRejected("duplicate_flux", f"{record.device_id} flux from seq {record.seq[0]} twice", index)
    return VerifiedFlux(index, body, record, quarantine)


def _retimed_time(batch: Batch, index: int, reading: Reading, key: bytes) -> int | None:
    """The re-derived time of an unsynced reading (None for a reading with its own time). Its evidence must be
    in the batch, its reference signed by ``key``, the very key the reading verifies under (the rule a proof
    bundle's verifier applies with the item's device key: one boot, one key), and the claimed time what the
    rule gives."""
    evidence = batch.retimed.get(index)
    if reading.flags & FLAG_TIME_NOT_SYNCED and reading.boot is None:
        raise BatchRejected(UNSYNCED_WITHOUT_BOOT, "a format-1 reading before its device's time sync has no "
                            "usable time (seconds since boot in its time field, no boot counter)", index)
    if not reading.unsynced:
        if evidence is not None:
            raise BatchRejected(MISMATCH, "re-timing evidence for a reading that has its own time", index)
        return None
    claimed, reference_bytes = evidence if evidence is not None else (None, b"")
    reference = None
    if evidence is not None:
        found = _verified_under_any(reference_bytes, [key], verify_reading)
        reference = found[0] if found is not None else None
        if reference is None:
            raise BatchRejected("retime_bad_reference", "the re-timing reference does not verify under the "
                                "reading's device key", index)
    try:
        derived = required_timestamp(reading, reference)
    except RetimeRejected as err:
        raise BatchRejected(err.reason, str(err), index) from err
    if claimed != derived:
        raise BatchRejected(MISMATCH, f"re-timed to {claimed}, the signed reference gives {derived}", index)
    return derived


def _leaf_key(
    index: int, body: bytes, device_key: DeviceKeyLookup, revoked_device_key: DeviceKeyLookup | None
) -> tuple[cose.Sign1, bytes, str | None]:
    """(parsed COSE_Sign1, key, quarantine) of a device-signed leaf (a reading or a flux): its COSE key id looked
    up among the site's devices, then among its revoked ones (quarantined); neither is unknown_device. Parsed on
    the fast path (verify.parse_sign1), once: a reading leaf is verified from this parse."""
    try:
        message = parse_sign1(body)
        device_id = message.kid.decode()
    except (ProtocolError, UnicodeError) as err:
        raise BatchRejected(getattr(err, "reason", "malformed_cose"), str(err), index) from err
    key, quarantine = device_key(device_id), None
    if key is None and revoked_device_key is not None:
        key = revoked_device_key(device_id)
        quarantine = QUARANTINE_DEVICE_REVOKED if key is not None else None
    if key is None:
        raise BatchRejected("unknown_device", f"device {device_id!r} is not registered for this site", index)
    return message, key, quarantine


def _verified_under_any(
    body: bytes, keys: Sequence[bytes], verify: Callable[[bytes, bytes], _Signed]
) -> tuple[_Signed, bytes] | None:
    """What ``verify`` makes of the leaf under the first of ``keys`` it verifies under, and that key; or None."""
    for key in keys:
        try:
            return verify(body, key), key
        except ProtocolError:
            continue
    return None


def _verify_aggregates(
    batch: Batch,
    readings: list[VerifiedReading],
    aggregates: list[tuple[int, dict[str, Any]]],
    factor: FactorLookup,
    baseline: BaselineLookup,
) -> None:
    header = batch.header
    by_device: dict[str, list[Reading]] = {}
    times: dict[str, dict[int, int]] = {}
    for item in readings:
        by_device.setdefault(item.reading.device_id, []).append(item.reading)
        if item.timestamp is not None:  # an unsynced reading's re-derived time
            times.setdefault(item.reading.device_id, {})[item.reading.seq] = item.timestamp
    covered: set[str] = set()
    for index, claimed in aggregates:
        device_id = claimed.get("device")
        if not isinstance(device_id, str) or device_id not in by_device:
            raise BatchRejected("aggregate_mismatch", f"aggregate for {device_id!r} has no readings here", index)
        if device_id in covered:
            raise BatchRejected("aggregate_mismatch", f"two aggregates for {device_id!r}", index)
        covered.add(device_id)
        factor_id = claimed.get("factor", {}).get("id") if isinstance(claimed.get("factor"), dict) else None
        used_factor = factor(factor_id) if isinstance(factor_id, str) else None
        if "factor" in claimed and used_factor is None:
            raise BatchRejected("bad_emission_factor", f"emission factor {factor_id!r} not allowed here", index)
        window = claimed.get("window")
        interval = claimed.get("interval_s")
        if window != header["window"] or type(interval) is not int or interval <= 0:
            raise BatchRejected("aggregate_mismatch", "aggregate window/interval differ from the batch", index)
        recomputed = aggregate_window(
            device_id,
            window[0],
            window[1],
            interval,
            by_device[device_id],
            used_factor if used_factor is not None else _NO_FACTOR,
            baseline(device_id),
            times.get(device_id),
            attributed=content_version(parse_leaf(batch.leaves[index])[1]) == AGGREGATE_ATTRIBUTED_VERSION,
        )
        if cbor.encode(recomputed) != cbor.encode(claimed):
            raise BatchRejected("aggregate_mismatch", f"aggregate of {device_id!r} does not match its readings", index)
    missing = set(by_device) - covered
    if missing:
        raise BatchRejected("aggregate_mismatch", f"no aggregate for devices {sorted(missing)}")


# Stands in when the claimed aggregate has no energy (so no factor): the recomputation then has no
# energy either, or the byte comparison fails.
_NO_FACTOR = EmissionFactor(
    "none", "none", Region("none", "none", "country", "ZZ"), 0, 0, "", "", datetime.date.min,
    Publication("none", "none", "none", None, None, None, (), "none"), "none",
)
