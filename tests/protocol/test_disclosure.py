"""Issue 16, selective disclosure: aggregate leaves commit to each field, salted; openings are checked strictly.

Real batches from the core's builder (readings signed with P-256, the gateway header signed), verified by the
cloud's own check (``batch_verify.verify_batch``); each defect is one case with its expected reason.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from typing import Any

import pytest

from carbontrace_protocol import cbor, disclosure, p256, views
from carbontrace_protocol.batch import (
    ZERO_HASH,
    Batch,
    MalformedBatch,
    aggregate_leaf,
    aggregate_window,
    build_batch,
    decode_batch,
    sign_batch,
)
from carbontrace_protocol.batch_verify import BatchRejected, verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.views import DataType

GATEWAY = p256.private_key_from_bytes(bytes(range(1, 33)))
DEVICE = p256.private_key_from_bytes(bytes(range(2, 34)))
FACTOR = get_factor("CN-national-2022")
START, END = 1_700_000_000, 1_700_000_060
CO2 = 7391  # distinctive: a closed field must not appear anywhere it is not opened


def _readings() -> list[Reading]:
    return [
        Reading("dev-1", seq, START + 10 * seq, "1.0.0", co2_ppm=CO2, temperature_centi_c=2150,
                humidity_centi_pct=4020, energy_wh=1000 + 5 * seq)
        for seq in range(6)
    ]


def _batch(aggregates: list[dict[str, Any]] | None = None) -> Batch:
    readings = _readings()
    signed = [sign_reading(r, DEVICE) for r in readings]
    if aggregates is None:
        aggregates = [aggregate_window("dev-1", START, END, 10, readings, FACTOR)]
    return build_batch(GATEWAY, "gw-1", "site-1", 0, (START, END), signed, aggregates, ZERO_HASH, END)


def _verify(batch: Batch | bytes) -> Any:
    return verify_batch(
        batch if isinstance(batch, bytes) else batch.encode(),
        p256.public_key(GATEWAY),
        lambda d: p256.public_key(DEVICE) if d == "dev-1" else None,
        lambda f: FACTOR if f == FACTOR.id else None,
        lambda d: None,
    )


def test_a_committed_leaf_opens_back_to_the_aggregate_and_hides_every_value() -> None:
    aggregate = aggregate_window("dev-1", START, END, 10, _readings(), FACTOR)
    batch = _batch([aggregate])
    assert batch.aggregates() == [(6, aggregate)]
    leaf = batch.leaves[6]
    assert cbor.encode(CO2) not in leaf and b"co2" in leaf  # named, committed, not readable
    assert _verify(batch).aggregates == [(6, aggregate)]
    again = _batch([aggregate])
    assert again.leaves[6] != leaf  # fresh salts: equal aggregates give unrelated commitments


def test_the_types_decide_which_fields_are_opened() -> None:
    leaf = _batch().leaves[6]
    public = views.fields_to_open(leaf, {DataType.EMISSIONS, DataType.AGGREGATES})
    assert public == set(views.AGGREGATE_PUBLIC_FIELDS) and "co2" not in public
    assert views.fields_to_open(leaf, {DataType.AGGREGATES, DataType.CO2}) == public | {"co2"}
    assert views.fields_to_open(leaf, {DataType.CO2}) == set()  # co2 alone selects readings, not aggregates
    every = set(DataType)
    assert views.fields_to_open(leaf, every) == views.committed_fields(leaf)


def test_a_view_shows_only_opened_fields() -> None:
    batch = _batch()
    leaf, openings = batch.leaves[6], batch.openings[6]
    types = frozenset({DataType.EMISSIONS})
    opened = {name: openings[name] for name in views.fields_to_open(leaf, types)}
    kind, content = views.leaf_content(leaf, opened)
    assert kind == "aggregate" and "co2" not in content and content["energy"]["delta_wh"] == 25
    assert views.view(kind, content, types) == content  # the view is exactly what was opened


def _opening(name: str, salt: bytes, value: Any) -> bytes:
    return cbor.encode([salt, value])


SALT = bytes(range(16))
BAD_OPENINGS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("other_value", lambda good: _opening("received", SALT, 5)),
    ("other_salt", lambda good: _opening("received", bytes(16), 6)),
    ("short_salt", lambda good: _opening("received", SALT[:15], 6)),
    ("not_a_pair", lambda good: cbor.encode([SALT, 6, 0])),
    ("not_cbor", lambda good: good[:-1]),
    ("long_integer", lambda good: bytes([0x82, 0x50]) + SALT + bytes([0x19, 0, 6])),
    ("float_value", lambda good: bytes([0x82, 0x50]) + SALT + bytes([0xFB]) + struct.pack(">d", 6.0)),
]


@pytest.mark.parametrize("make", [m for _, m in BAD_OPENINGS], ids=[n for n, _ in BAD_OPENINGS])
def test_a_bad_opening_is_refused(make: Callable[[bytes], bytes]) -> None:
    good = _opening("received", SALT, 6)
    expected = disclosure.commitment("received", SALT, 6)
    assert disclosure.open_field("received", good, expected) == 6
    with pytest.raises(disclosure.BadOpening):
        disclosure.open_field("received", make(good), expected)


def _edited(edit: Callable[[Batch], None]) -> bytes:
    batch = _batch()
    edit(batch)
    return batch.encode()


def _resigned(edit: Callable[[list[bytes], dict[int, dict[str, bytes]]], None]) -> bytes:
    """The batch with its leaves or openings changed and the header signed again: only the change is wrong."""
    batch = _batch()
    leaves, openings = list(batch.leaves), copy.deepcopy(batch.openings)
    edit(leaves, openings)
    return sign_batch(GATEWAY, "gw-1", "site-1", 0, (START, END), leaves, 6, openings, ZERO_HASH, END).encode()


def _clear_aggregate(leaves: list[bytes], openings: dict[int, dict[str, bytes]]) -> None:
    leaves[6] = aggregate_leaf(aggregate_window("dev-1", START, END, 10, _readings(), FACTOR))
    openings.clear()


def _inflated(leaves: list[bytes], openings: dict[int, dict[str, bytes]]) -> None:
    """Energy recommitted one Wh higher, with a matching opening: every opening checks, the aggregate lies."""
    _, body = cbor.decode(leaves[6])
    salt, energy = cbor.decode(openings[6]["energy"])
    energy["delta_wh"] += 1
    body["fields"]["energy"] = disclosure.commitment("energy", salt, energy)
    openings[6]["energy"] = cbor.encode([salt, energy])
    leaves[6] = aggregate_leaf(body)


BATCH_DEFECTS: list[tuple[str, Callable[[], bytes], str]] = [
    ("clear_aggregate", lambda: _resigned(_clear_aggregate), "aggregate_in_clear"),
    ("opening_missing", lambda: _edited(lambda b: b.openings[6].pop("co2")), "bad_opening"),
    ("openings_of_leaf_missing", lambda: _edited(lambda b: b.openings.clear()), "bad_opening"),
    ("opening_swapped", lambda: _edited(lambda b: b.openings[6].update(co2=b.openings[6]["received"])), "bad_opening"),
    ("opening_for_a_reading", lambda: _edited(lambda b: b.openings.update({0: dict(b.openings[6])})), "bad_opening"),
    ("opening_of_no_field", lambda: _edited(lambda b: b.openings[6].update(extra=b"\x00")), "bad_opening"),
    ("inflated_and_recommitted", lambda: _resigned(_inflated), "aggregate_mismatch"),
]


@pytest.mark.parametrize(("make", "reason"), [(m, r) for _, m, r in BATCH_DEFECTS], ids=[n for n, _, _ in BATCH_DEFECTS])
def test_a_batch_with_a_disclosure_defect_is_rejected(make: Callable[[], bytes], reason: str) -> None:
    _verify(_batch())  # the untouched batch passes
    with pytest.raises(BatchRejected) as err:
        _verify(make())
    assert err.value.reason == reason, err.value


def test_the_blob_names_openings_only_when_there_are_some() -> None:
    readings_only = build_batch(GATEWAY, "gw-1", "site-1", 0, (START, END), [], [], ZERO_HASH, END)
    blob = cbor.decode(readings_only.encode())
    assert set(blob) == {"header", "leaves"}
    blob["openings"] = {}  # present but empty: not the canonical blob
    with pytest.raises(MalformedBatch, match="openings"):
        decode_batch(cbor.encode(blob))
    decoded = decode_batch(_batch().encode()).openings
    assert set(decoded) == {6} and set(decoded[6]) == views.committed_fields(_batch().leaves[6])
