"""Gateway batches: typed Merkle leaves, per-window aggregates, the signed batch header, the upload blob.

The gateway builds a batch with these functions and the cloud re-derives every part of it with the same
ones (``carbontrace_protocol.batch_verify``), so the two can never disagree on bytes. Format, byte by
byte: docs/protocol.md.

Leaves (the batch tree's leaf data, hashed with ``merkle.leaf_hash``):
  reading leaf    CBOR [1, <COSE_Sign1 bytes of the signed reading>]
  aggregate leaf  CBOR [2, <committed aggregate map>] (carbontrace_protocol/disclosure.py; format 1, the
                  aggregate map in clear, is only read, for batches stored before format 2)
  flux leaf       CBOR [3, <COSE_Sign1 bytes of a signed chamber flux record>] (carbontrace_protocol/flux.py),
                  after the aggregates; the header's ``fluxes`` counts them (absent when there are none, so a
                  batch without fluxes keeps its bytes)
Typed leaves let a caller ask for one kind only; the public can check an aggregate without seeing any
raw reading, and a reading leaf hash covers its signature, so sibling hashes leak no guessable value. The
blob carries the opening of every committed field (``openings``), so whoever may open the sealed blob can
disclose any field of any aggregate, and a bundle can carry only the openings its reader may see.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from carbontrace_protocol import attribution, cbor, cose, disclosure, merkle
from carbontrace_protocol.emission_factors import FACTOR_EXPONENT, EmissionFactor
from carbontrace_protocol.errors import MalformedCBOR, ProtocolError
from carbontrace_protocol.reading import FLAG_METER_RESET, MAX_TIMESTAMP, Reading

BATCH_FORMAT_VERSION = 1
# The aggregate content version: 1 (leaf format 2) counts energy by reception window; 3 (leaf format 3)
# adds the energy's measurement-time runs and baseline time (carbontrace_protocol/attribution.py).
AGGREGATE_LEGACY_VERSION = BATCH_FORMAT_VERSION
AGGREGATE_ATTRIBUTED_VERSION = disclosure.COMMITTED_ATTRIBUTED_VERSION
LEAF_READING = 1
LEAF_AGGREGATE = 2
LEAF_FLUX = 3
LEAF_TYPES = {LEAF_READING: "reading", LEAF_AGGREGATE: "aggregate", LEAF_FLUX: "flux"}
ZERO_HASH = bytes(32)


class MalformedBatch(ProtocolError):
    reason = "malformed_batch"


def _decimal(exponent: int, mantissa: int) -> cbor.Tag:
    return cbor.Tag(cbor.TAG_DECIMAL_FRACTION, [exponent, mantissa])


def round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even, in integers (exact on every platform)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def content_version(body: Mapping[Any, Any]) -> int:
    """The aggregate content version a committed leaf body holds (its own ``v`` is the leaf format)."""
    attributed = body.get("v") == disclosure.COMMITTED_ATTRIBUTED_VERSION
    return AGGREGATE_ATTRIBUTED_VERSION if attributed else AGGREGATE_LEGACY_VERSION


def reading_leaf(signed_reading: bytes) -> bytes:
    return cbor.encode([LEAF_READING, bytes(signed_reading)])


def aggregate_leaf(aggregate: dict[str, Any]) -> bytes:
    return cbor.encode([LEAF_AGGREGATE, aggregate])


def flux_leaf(signed_flux: bytes) -> bytes:
    return cbor.encode([LEAF_FLUX, bytes(signed_flux)])


def flux_count(header: Mapping[str, Any]) -> int:
    """How many flux leaves a batch header counts (0 when it has no ``fluxes`` field)."""
    return int(header.get("fluxes", 0))


def leaf_count(header: Mapping[str, Any]) -> int:
    """How many leaves a batch header counts: readings, aggregates and fluxes."""
    return int(header["readings"]) + int(header["aggregates"]) + flux_count(header)


def parse_leaf(leaf: bytes) -> tuple[int, Any]:
    """(leaf type, body) of a leaf; raises ``MalformedBatch`` for an unknown shape."""
    try:
        item = cbor.decode(leaf)
    except MalformedCBOR as err:
        raise MalformedBatch(f"leaf is not CBOR: {err}") from err
    if not isinstance(item, list) or len(item) != 2 or item[0] not in LEAF_TYPES:
        raise MalformedBatch("leaf must be [type, body] with type 1 (reading), 2 (aggregate) or 3 (flux)")
    kind, body = item
    if kind == LEAF_READING and not isinstance(body, bytes):
        raise MalformedBatch("reading leaf body must be the signed reading bytes")
    if kind == LEAF_FLUX and not isinstance(body, bytes):
        raise MalformedBatch("flux leaf body must be the signed flux record bytes")
    if kind == LEAF_AGGREGATE and not isinstance(body, dict):
        raise MalformedBatch("aggregate leaf body must be a map")
    return kind, body


# A device's energy baseline: (seq, Wh, measurement time) of its highest-sequence reading with energy in
# earlier batches; the time is None where it was not kept (a baseline from before attribution).
Baseline = tuple[int, int, "int | None"]


def as_baseline(value: Sequence[int | None] | None) -> Baseline | None:
    """A baseline from (seq, Wh) or (seq, Wh, time)."""
    if value is None:
        return None
    seq, wh = value[0], value[1]
    if seq is None or wh is None:
        raise ValueError("a baseline has a sequence number and a counter value")
    return int(seq), int(wh), (value[2] if len(value) > 2 else None)


def energy_delta(baseline: Sequence[int | None] | None, readings: Sequence[Reading]) -> tuple[int, int]:
    """(Wh consumed, meter resets) over ``readings`` (in sequence order) after ``baseline`` (seq, Wh).

    A counter that goes down, or a reading flagged FLAG_METER_RESET, is a reset or wrap: consumption
    restarts from zero at that reading instead of turning negative. Readings at or before the baseline's
    sequence number (late arrivals after an outage) count for nothing: the cumulative counter of the later
    readings already holds their energy, and counting them again would double it.
    """
    previous = baseline[1] if baseline is not None else None
    after_seq = int(baseline[0] or 0) if baseline is not None else -1
    delta = 0
    resets = 0
    for reading in readings:
        value = reading.energy_wh
        if value is None or reading.seq <= after_seq:
            continue
        if previous is not None:
            if value < previous or reading.flags & FLAG_METER_RESET:
                resets += 1
                delta += value
            else:
                delta += value - previous
        previous = value
    return delta, resets


def aggregate_window(
    device_id: str,
    window_start: int,
    window_end: int,
    interval_s: int,
    readings: Iterable[Reading],
    factor: EmissionFactor,
    baseline: Sequence[int | None] | None = None,
    times: Mapping[int, int] | None = None,
    attributed: bool = True,
) -> dict[str, Any]:
    """The aggregate of one device over [window_start, window_end).

    ``readings`` are that device's readings in the batch (any order); ``baseline`` is (seq, energy_wh,
    measurement time) of the device's highest-sequence reading with energy in earlier batches, so energy
    used between windows is counted exactly once. The cloud derives the same baseline from the batches it
    accepted before. ``times``: by sequence number, the re-derived time of each unsynced reading (one
    without a time of its own). ``attributed`` (aggregate format 3) adds the energy's runs by measurement
    time (carbontrace_protocol/attribution.py); False makes a format-1 aggregate, to re-derive one of those.
    """
    base = as_baseline(baseline)
    ordered = sorted(readings, key=lambda r: r.seq)
    if not ordered:
        raise ValueError("an aggregate needs at least one reading")
    if window_end <= window_start or interval_s <= 0:
        raise ValueError("empty window or interval")
    for reading in ordered:
        if reading.device_id != device_id:
            raise ValueError("reading of another device in the aggregate")
    seqs = [r.seq for r in ordered]
    aggregate: dict[str, Any] = {
        "v": AGGREGATE_ATTRIBUTED_VERSION if attributed else AGGREGATE_LEGACY_VERSION,
        "device": device_id,
        "window": [window_start, window_end],
        "interval_s": interval_s,
        "expected": (window_end - window_start) // interval_s,
        "received": len(ordered),
        "seq": [seqs[0], seqs[-1]],
        "missing": seqs[-1] - seqs[0] + 1 - len(set(seqs)),
    }
    co2 = [r.co2_ppm for r in ordered if r.co2_ppm is not None]
    if co2:
        aggregate["co2"] = {
            "n": len(co2),
            "min": min(co2),
            "max": max(co2),
            "mean": _decimal(-2, round_div(100 * sum(co2), len(co2))),
        }
    temps = [r.temperature_centi_c for r in ordered if r.temperature_centi_c is not None]
    if temps:
        aggregate["temp_mean"] = _decimal(-2, round_div(sum(temps), len(temps)))
    hums = [r.humidity_centi_pct for r in ordered if r.humidity_centi_pct is not None]
    if hums:
        aggregate["rh_mean"] = _decimal(-2, round_div(sum(hums), len(hums)))
    energy = [r for r in ordered if r.energy_wh is not None]
    if energy:
        delta, resets = energy_delta(base, energy)
        if attributed:
            runs, peak = _runs_of(base, energy, ordered, interval_s, times or {})
            aggregate["energy"] = {
                "baseline": list(base) if base is not None else None,
                "end_wh": energy[-1].energy_wh,
                "delta_wh": delta,
                "resets": resets,
                "runs": runs,
                "peak": list(peak) if peak is not None else None,
            }
        else:
            aggregate["energy"] = {
                "baseline": [base[0], base[1]] if base is not None else None,
                "end_wh": energy[-1].energy_wh,
                "delta_wh": delta,
                "resets": resets,
            }
        aggregate["factor"] = {"id": factor.id, "kg_per_kwh": _decimal(FACTOR_EXPONENT, factor.kg_per_kwh_e4)}
        # Wh × (1e-4 kg/kWh) = 1e-4 g: exact grams of CO2 with four decimals.
        aggregate["emissions_g"] = _decimal(FACTOR_EXPONENT, delta * factor.kg_per_kwh_e4)
    return aggregate


def measurement_time(reading: Reading, times: Mapping[int, int]) -> int | None:
    """A reading's own signed time, or the re-derived one of an unsynced reading."""
    return reading.timestamp if reading.timestamp is not None else times.get(reading.seq)


def _runs_of(
    base: Baseline | None,
    energy: Sequence[Reading],
    ordered: Sequence[Reading],
    interval_s: int,
    times: Mapping[int, int],
) -> tuple[list[attribution.Run], attribution.Rate | None]:
    """The energy runs and peak rate of a device's readings after its baseline (attribution rule 1)."""
    after_seq = base[0] if base is not None else -1
    points = [
        attribution.MeterPoint(r.seq, measurement_time(r, times), int(r.energy_wh or 0),
                               bool(r.flags & FLAG_METER_RESET))
        for r in energy
        if r.seq > after_seq
    ]
    start = attribution.MeterPoint(base[0], base[2], base[1]) if base is not None else None
    power_peak: attribution.Rate | None = None
    for reading in ordered:
        if reading.power_deci_w is not None:
            power_peak = attribution.faster(power_peak, (reading.power_deci_w, attribution.DECI_W_PER_WH_PER_S))
    return attribution.energy_runs(start, points, interval_s, power_peak)


def batch_id(gateway_id: str, batch_seq: int) -> str:
    return f"{gateway_id}/{batch_seq}"


def header_hash(signed_header: bytes) -> bytes:
    """What the next batch of the same gateway names as ``prev``."""
    return hashlib.sha256(signed_header).digest()


# Openings of one committed aggregate leaf: field name -> CBOR [salt, value] (disclosure.open_field).
Openings = dict[str, bytes]
# The evidence for one re-timed reading leaf (an unsynced format-2 reading): (the time the gateway stored it
# at, the signed reference reading of the same device and boot it was re-timed from: carbontrace_protocol/
# retime.py). The device signed the reference, so the cloud re-derives the time instead of trusting it.
Retimed = tuple[int, bytes]


class Batch:
    """A built (or parsed) batch: the signed header, its decoded fields, the leaves and, by leaf index, the
    openings of each committed aggregate leaf."""

    def __init__(
        self,
        signed_header: bytes,
        header: dict[str, Any],
        leaves: list[bytes],
        openings: dict[int, Openings] | None = None,
        retimed: dict[int, Retimed] | None = None,
    ) -> None:
        self.signed_header = signed_header
        self.header = header
        self.leaves = leaves
        self.openings = openings or {}
        self.retimed = retimed or {}  # by reading leaf index

    @property
    def id(self) -> str:
        return batch_id(self.header["gateway"], self.header["batch_seq"])

    @property
    def root(self) -> bytes:
        return bytes(self.header["root"])

    @property
    def hash(self) -> bytes:
        return header_hash(self.signed_header)

    def leaf_hashes(self) -> list[bytes]:
        return [merkle.leaf_hash(leaf) for leaf in self.leaves]

    def aggregates(self) -> list[tuple[int, dict[str, Any]]]:
        """(leaf index, aggregate as ``aggregate_window`` made it) of each aggregate leaf, committed ones opened
        whole. Raises ``disclosure.BadOpening`` if an opening is missing or does not match its commitment."""
        out = []
        committed = set()
        first = self.header["readings"]
        for index in range(first, first + self.header["aggregates"]):
            _, body = parse_leaf(self.leaves[index])
            if disclosure.is_committed(body):
                committed.add(index)
                opened = disclosure.open_fields(body, self.openings.get(index, {}), complete=True)
                body = {"v": content_version(body), **opened}
            out.append((index, body))
        if set(self.openings) - committed:
            raise disclosure.BadOpening("openings for leaves that are not committed aggregates")
        return out

    def fluxes(self) -> list[tuple[int, bytes]]:
        """(leaf index, signed flux record) of each flux leaf (the last ``fluxes`` leaves)."""
        count = flux_count(self.header)
        out = []
        for index in range(len(self.leaves) - count, len(self.leaves)):
            _, body = parse_leaf(self.leaves[index])
            out.append((index, bytes(body)))
        return out

    def encode(self) -> bytes:
        """The upload blob, also what the content store keeps (so its CID names the whole batch)."""
        blob: dict[str, Any] = {"header": self.signed_header, "leaves": self.leaves}
        if self.openings:
            blob["openings"] = self.openings
        if self.retimed:
            blob["retimed"] = {index: [ts, reference] for index, (ts, reference) in self.retimed.items()}
        return cbor.encode(blob)


def build_batch(
    gateway_key: int,
    gateway_id: str,
    site_id: str,
    batch_seq: int,
    window: tuple[int, int],
    signed_readings: Sequence[bytes],
    aggregates: Sequence[dict[str, Any]],
    prev_hash: bytes,
    created: int,
    sign1: Callable[[int, bytes, bytes], bytes] = cose.sign1,
    random_bytes: Callable[[int], bytes] = os.urandom,
    retimed: dict[int, Retimed] | None = None,
    signed_fluxes: Sequence[bytes] = (),
) -> Batch:
    """Build and sign a batch. Readings come first in the given order, then the aggregates, each committed
    field by field with fresh salts from ``random_bytes``, then the signed chamber fluxes in the given order.
    ``sign1`` makes the COSE_Sign1 header (cose.sign1; a load generator may pass an OpenSSL-backed one with the
    same bytes). ``retimed``: the evidence of each re-timed reading, keyed by its index in ``signed_readings``
    (which is its leaf index)."""
    leaves = [reading_leaf(r) for r in signed_readings]
    openings: dict[int, Openings] = {}
    for aggregate in aggregates:
        body, opened = disclosure.commit(aggregate, random_bytes)
        openings[len(leaves)] = opened
        leaves.append(aggregate_leaf(body))
    leaves += [flux_leaf(f) for f in signed_fluxes]
    return sign_batch(
        gateway_key, gateway_id, site_id, batch_seq, window, leaves, len(signed_readings), openings, prev_hash,
        created, sign1, retimed, len(signed_fluxes),
    )


def sign_batch(
    gateway_key: int,
    gateway_id: str,
    site_id: str,
    batch_seq: int,
    window: tuple[int, int],
    leaves: list[bytes],
    reading_count: int,
    openings: dict[int, Openings],
    prev_hash: bytes,
    created: int,
    sign1: Callable[[int, bytes, bytes], bytes] = cose.sign1,
    retimed: dict[int, Retimed] | None = None,
    flux_leaves: int = 0,
) -> Batch:
    """The signed header over built leaves (``build_batch``; a renumbered batch keeps its leaves and salts);
    the last ``flux_leaves`` leaves are flux leaves."""
    header: dict[str, Any] = {
        "v": BATCH_FORMAT_VERSION,
        "gateway": gateway_id,
        "site": site_id,
        "batch_seq": batch_seq,
        "window": [window[0], window[1]],
        "readings": reading_count,
        "aggregates": len(leaves) - reading_count - flux_leaves,
        "root": merkle.root([merkle.leaf_hash(leaf) for leaf in leaves]),
        "prev": bytes(prev_hash),
        "created": created,
    }
    if flux_leaves:
        header["fluxes"] = flux_leaves
    signed_header = sign1(gateway_key, gateway_id.encode(), cbor.encode(header))
    return Batch(signed_header, header, leaves, openings, retimed)


_HEADER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "gateway": str,
    "site": str,
    "batch_seq": int,
    "window": list,
    "readings": int,
    "aggregates": int,
    "root": bytes,
    "prev": bytes,
    "created": int,
}


# Window bounds: times are Unix seconds stored as SQL BIGINT by the cloud, so below 2^63.
MAX_TIME = 2**63 - 1


def check_window(window: Any) -> tuple[int, int]:
    """A header's window ``[start, end)``: exactly two integers, 0 <= start < end <= MAX_TIME. Half-open and
    non-empty, as ``aggregate_window`` requires; anything else is ``MalformedBatch`` (a 422 at the cloud)."""
    if not isinstance(window, list) or len(window) != 2:
        raise MalformedBatch("batch header window must be [start, end]")
    start, end = window
    if any(not isinstance(t, int) or isinstance(t, bool) for t in (start, end)):
        raise MalformedBatch("batch header window bounds must be integers")
    if not 0 <= start < end <= MAX_TIME:
        raise MalformedBatch(f"batch header window must satisfy 0 <= start < end <= {MAX_TIME}")
    return start, end


def parse_header(signed_header: bytes) -> tuple[cose.Sign1, dict[str, Any]]:
    """Parse (not verify) a signed batch header; checks its shape."""
    message = cose.parse_sign1(signed_header)
    try:
        header = cbor.decode(message.payload)
    except MalformedCBOR as err:
        raise MalformedBatch(f"batch header payload is not CBOR: {err}") from err
    if not isinstance(header, dict) or set(header) - {"fluxes"} != set(_HEADER_FIELDS):
        raise MalformedBatch(f"batch header must have exactly the fields {sorted(_HEADER_FIELDS)} (and 'fluxes' "
                             "when it holds flux leaves)")
    if "fluxes" in header and (type(header["fluxes"]) is not int or header["fluxes"] <= 0):
        raise MalformedBatch("batch header 'fluxes' must be a positive integer, absent when there are none")
    for name, kind in _HEADER_FIELDS.items():
        if not isinstance(header[name], kind) or isinstance(header[name], bool):
            raise MalformedBatch(f"batch header field {name!r} has the wrong type")
    if header["v"] != BATCH_FORMAT_VERSION:
        raise MalformedBatch(f"unsupported batch format {header['v']}")
    if len(header["root"]) != 32 or len(header["prev"]) != 32:
        raise MalformedBatch("root and prev must be 32-byte hashes")
    check_window(header["window"])
    if message.kid != header["gateway"].encode():
        raise MalformedBatch("header key id is not the gateway id")
    return message, header


_BLOB_REQUIRED = {"header", "leaves"}
_BLOB_FIELDS = {"header", "leaves", "openings", "retimed"}


def decode_batch(blob: bytes) -> Batch:
    """Parse an upload blob (not verified: see ``batch_verify.verify_batch``)."""
    try:
        item = cbor.decode(blob)
    except MalformedCBOR as err:
        raise MalformedBatch(f"batch is not CBOR (truncated upload?): {err}") from err
    if not isinstance(item, dict) or not _BLOB_REQUIRED <= set(item) <= _BLOB_FIELDS:
        raise MalformedBatch("batch must be a map with exactly 'header', 'leaves' and, if any, 'openings' and "
                             "'retimed'")
    signed_header, leaves = item["header"], item["leaves"]
    if not isinstance(signed_header, bytes) or not isinstance(leaves, list):
        raise MalformedBatch("batch header must be bytes and leaves a list")
    if not all(isinstance(leaf, bytes) for leaf in leaves):
        raise MalformedBatch("every leaf must be a byte string")
    _, header = parse_header(signed_header)
    if "openings" in item and item["openings"] == {}:
        raise MalformedBatch("a batch without committed aggregates has no 'openings'")
    if "retimed" in item and item["retimed"] == {}:
        raise MalformedBatch("a batch without re-timed readings has no 'retimed'")
    return Batch(signed_header, header, leaves, _openings(item.get("openings", {}), len(leaves)),
                 _retimed(item.get("retimed", {}), header["readings"]))


def _retimed(value: Any, reading_count: int) -> dict[int, Retimed]:
    """The blob's re-timing evidence, shape only (``batch_verify`` re-derives each time from its reference)."""
    if not isinstance(value, dict):
        raise MalformedBatch("retimed must be a map")
    out: dict[int, Retimed] = {}
    for index, evidence in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < reading_count:
            raise MalformedBatch("retimed must be keyed by the index of a reading leaf of the batch")
        if not isinstance(evidence, list) or len(evidence) != 2:
            raise MalformedBatch(f"retimed evidence of leaf {index} must be [timestamp, reference reading]")
        timestamp, reference = evidence
        if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise MalformedBatch(f"retimed timestamp of leaf {index} must be an integer in [0, {MAX_TIMESTAMP}]")
        if not isinstance(reference, bytes):
            raise MalformedBatch(f"retimed reference of leaf {index} must be the signed reading's bytes")
        out[index] = (timestamp, reference)
    return out


def _openings(value: Any, leaf_count: int) -> dict[int, Openings]:
    """The blob's openings map, shape only (``Batch.aggregates`` checks them against the commitments)."""
    if not isinstance(value, dict):
        raise MalformedBatch("openings must be a map")
    for index, fields in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < leaf_count:
            raise MalformedBatch("openings must be keyed by the index of a leaf of the batch")
        if not isinstance(fields, dict) or not fields:
            raise MalformedBatch(f"openings of leaf {index} must be a non-empty map")
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in fields.items()):
            raise MalformedBatch(f"openings of leaf {index} must map field names to byte strings")
    return dict(value)
