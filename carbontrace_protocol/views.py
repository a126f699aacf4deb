"""Data types and decoded views: which leaves a type filter selects and exactly what a view shows.

One definition for the cloud that answers a trace query and every verifier that checks the answer: a view
is not free text next to the proof, it is a function of the leaf and the query's types, and the verifier
recomputes it and compares with exact JSON types (an integer is not a float, 0 is not false).

Reading leaves: a reading matches a type when it carries that measurement; its view has the identity
fields (READING_META) and the requested measurement fields it carries. Aggregate leaves: type `aggregates`
selects every aggregate, `emissions` the aggregates with an emissions figure; either discloses the public
fields (AGGREGATE_PUBLIC_FIELDS: completeness, energy, factor, emissions), and `co2`, `temperature`,
`humidity` asked beside them also disclose those means (AGGREGATE_TYPE_FIELDS). A committed aggregate leaf
(carbontrace_protocol/disclosure.py) is opened for exactly those fields and no other, so the types decide
what is opened, not only what is shown. A leaf in the bundle is always whole: that is what its proof covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from carbontrace_protocol import attribution, cbor, disclosure
from carbontrace_protocol.batch import LEAF_FLUX, LEAF_READING, parse_leaf
from carbontrace_protocol.flux import parse_signed_flux
from carbontrace_protocol.reading import Reading
from carbontrace_protocol.verify import unverified_reading


class DataType(StrEnum):
    CO2 = "co2"
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    ENERGY = "energy"
    EMISSIONS = "emissions"
    AGGREGATES = "aggregates"
    FLUX = "flux"  # chamber flux records (carbontrace_protocol/flux.py): their own data type, never a reading


READING_TYPE_FIELDS: dict[DataType, tuple[str, ...]] = {
    DataType.CO2: ("co2_ppm",),
    DataType.TEMPERATURE: ("temperature_centi_c",),
    DataType.HUMIDITY: ("humidity_centi_pct",),
    DataType.ENERGY: ("energy_wh", "power_deci_w"),
}
READING_TYPES = frozenset(READING_TYPE_FIELDS)
AGGREGATE_TYPES = frozenset({DataType.EMISSIONS, DataType.AGGREGATES})
FLUX_TYPES = frozenset({DataType.FLUX})
ALL_TYPES = frozenset(DataType)
READING_META = ("device_id", "seq", "timestamp", "firmware", "flags")
READING_FIELDS = ("co2_ppm", "temperature_centi_c", "humidity_centi_pct", "energy_wh", "power_deci_w")
AGGREGATE_CLEAR = ("v", "device", "window")
# What the public and trading platforms may see of an aggregate: how complete it is and its emissions.
AGGREGATE_PUBLIC_FIELDS = (
    "interval_s",
    "expected",
    "received",
    "seq",
    "missing",
    "energy",
    "factor",
    "emissions_g",
)
AGGREGATE_TYPE_FIELDS: dict[DataType, tuple[str, ...]] = {
    DataType.CO2: ("co2",),
    DataType.TEMPERATURE: ("temp_mean",),
    DataType.HUMIDITY: ("rh_mean",),
}

KIND_READING = "reading"
KIND_AGGREGATE = "aggregate"
# A chamber flux leaf (carbontrace_protocol/flux.py): its own kind, never a reading, selected by type `flux` only;
# its content is the record's fields (decimal fractions as {"e", "m"}), all shown: the record is signed in clear.
KIND_FLUX = "flux"


def flux_content(signed: bytes) -> dict[str, Any]:
    """The fields of a signed flux record as JSON (not verified here)."""
    _message, record = parse_signed_flux(signed)
    return aggregate_json(record.as_map())


def reading_content(reading: Reading) -> dict[str, Any]:
    return {name: getattr(reading, name) for name in READING_META + READING_FIELDS}


def aggregate_json(aggregate: dict[Any, Any]) -> dict[str, Any]:
    """An aggregate map as JSON: a decimal fraction (CBOR tag 4) is {"e": exponent, "m": mantissa}, bytes hex."""

    def convert(value: Any) -> Any:
        if isinstance(value, cbor.Tag) and isinstance(value.value, list) and len(value.value) == 2:
            return {"e": value.value[0], "m": value.value[1]}
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, bytes):
            return value.hex()
        return value

    converted = convert(aggregate)
    assert isinstance(converted, dict)
    return converted


def leaf_content(leaf: bytes, openings: Mapping[str, bytes] | None = None) -> tuple[str, dict[str, Any]]:
    """(kind, decoded fields) of a leaf; the signature is not checked here. Raises ProtocolError.

    A committed aggregate shows its clear fields and the fields ``openings`` open (each checked against its
    commitment); other leaves take no openings."""
    kind, body = parse_leaf(leaf)
    if kind == LEAF_FLUX:
        if openings:
            raise disclosure.BadOpening("only a committed aggregate leaf has fields to open")
        return KIND_FLUX, flux_content(body)
    if kind == LEAF_READING or not disclosure.is_committed(body):
        if openings:
            raise disclosure.BadOpening("only a committed aggregate leaf has fields to open")
        if kind == LEAF_READING:
            return KIND_READING, reading_content(unverified_reading(body))
        return KIND_AGGREGATE, aggregate_json(body)
    opened = disclosure.open_fields(body, openings or {})
    return KIND_AGGREGATE, aggregate_json({"v": body["v"], **opened})


def committed_fields(leaf: bytes) -> frozenset[str]:
    """The field names a committed aggregate leaf commits to (none for any other leaf). Raises ProtocolError."""
    kind, body = parse_leaf(leaf)
    if kind in (LEAF_READING, LEAF_FLUX) or not disclosure.is_committed(body):
        return frozenset()
    return frozenset(disclosure.check_body(body))


def fields_in_clear(leaf: bytes) -> frozenset[str]:
    """The measured or derived fields a leaf shows to whoever holds its bytes, whatever a bundle opens: a
    reading leaf's measurements (signed in clear), every field of a format 1 aggregate (the map in clear), none
    of a committed aggregate (its device and window place it; they are not fields). Raises ProtocolError."""
    kind, body = parse_leaf(leaf)
    if kind == LEAF_FLUX:  # signed in clear, like a reading
        return frozenset(flux_content(body)) - {"type", "v", "device"}
    if kind == LEAF_READING:
        content = reading_content(unverified_reading(body))
        return frozenset(name for name in READING_FIELDS if content.get(name) is not None)
    if disclosure.is_committed(body):
        return frozenset()
    return frozenset(str(name) for name in body) - frozenset(AGGREGATE_CLEAR)


def aggregate_fields_of(types: Iterable[DataType]) -> frozenset[str]:
    """The aggregate fields a query for ``types`` discloses (beyond the clear device and window)."""
    wanted = frozenset(types)
    if not wanted & AGGREGATE_TYPES:
        return frozenset()
    return frozenset(AGGREGATE_PUBLIC_FIELDS).union(*(AGGREGATE_TYPE_FIELDS.get(t, ()) for t in wanted))


def fields_to_open(leaf: bytes, types: Iterable[DataType]) -> frozenset[str]:
    """Exactly the committed fields of ``leaf`` that a bundle for ``types`` opens: no more (that would
    disclose), no fewer (the view could not be checked)."""
    return committed_fields(leaf) & aggregate_fields_of(types)


def reading_fields_of(types: Iterable[DataType]) -> list[str]:
    return [f for t in sorted(types) for f in READING_TYPE_FIELDS.get(t, ())]


def selects(kind: str, content: dict[str, Any], types: frozenset[DataType]) -> bool:
    """Whether a type filter selects this leaf."""
    if kind == KIND_FLUX:
        return DataType.FLUX in types
    if kind == KIND_READING:
        return any(content.get(f) is not None for f in reading_fields_of(types))
    if DataType.AGGREGATES in types:
        return True
    return DataType.EMISSIONS in types and "emissions_g" in content


def view(kind: str, content: dict[str, Any], types: frozenset[DataType]) -> dict[str, Any]:
    """Exactly the decoded fields a caller who asked for ``types`` is shown."""
    if kind == KIND_FLUX:
        return dict(content) if DataType.FLUX in types else {}
    if kind == KIND_READING:
        shown = (*READING_META, *reading_fields_of(types))
        return {k: content[k] for k in shown if content.get(k) is not None}
    shown = (*AGGREGATE_CLEAR, *sorted(aggregate_fields_of(types)))
    return {k: content[k] for k in shown if k in content}


def leaf_time(kind: str, content: dict[str, Any]) -> tuple[int, int]:
    """[start, end) the leaf covers: a reading's instant (end = start + 1); an aggregate's window, widened to
    the measurement time of its energy when that is disclosed (energy buffered through an outage belongs
    to the time it was used, before the window that received it: carbontrace_protocol/attribution.py); a flux
    record's chamber session."""
    if kind == KIND_FLUX:
        session = content.get("session")
        if not isinstance(session, list) or len(session) != 2:
            raise ValueError("flux session must be two integers")
        return int(session[0]), int(session[1])
    if kind == KIND_READING:
        timestamp = content.get("timestamp")
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            # an unsynced reading (format 2): its time is re-derived from its batch's evidence, not in the leaf
            raise ValueError("the reading carries no time of its own (taken before its device's time sync)")
        return timestamp, timestamp + 1
    window = content.get("window")
    if (
        not isinstance(window, list)
        or len(window) != 2
        or not all(isinstance(w, int) and not isinstance(w, bool) for w in window)
    ):
        raise ValueError("aggregate window must be two integers")
    span = attribution.measured_span(content.get("energy"))
    if span is None:
        return window[0], window[1]
    return min(window[0], span[0]), max(window[1], span[1])


def leaf_device(kind: str, content: dict[str, Any]) -> str:
    device = content.get("device_id" if kind == KIND_READING else "device")
    if not isinstance(device, str):
        raise ValueError("leaf names no device")
    return device


def same_json(a: Any, b: Any) -> bool:
    """Equality that keeps JSON types apart: 674 is not 674.0, 0 is not false, key order does not matter."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
